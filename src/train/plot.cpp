// Training curves rendered into an RGB image (see plot.h).
#include "train/plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>

namespace umamba::train {

namespace {

// 3×5 glyphs, rows top to bottom, '#' set.
const std::map<char, std::array<const char*, 5>>& font() {
  static const std::map<char, std::array<const char*, 5>> f{
      {'0', {"###", "#.#", "#.#", "#.#", "###"}}, {'1', {".#.", "##.", ".#.", ".#.", "###"}},
      {'2', {"###", "..#", "###", "#..", "###"}}, {'3', {"###", "..#", "###", "..#", "###"}},
      {'4', {"#.#", "#.#", "###", "..#", "..#"}}, {'5', {"###", "#..", "###", "..#", "###"}},
      {'6', {"###", "#..", "###", "#.#", "###"}}, {'7', {"###", "..#", "..#", "..#", "..#"}},
      {'8', {"###", "#.#", "###", "#.#", "###"}}, {'9', {"###", "#.#", "###", "..#", "###"}},
      {'A', {".#.", "#.#", "###", "#.#", "#.#"}}, {'B', {"##.", "#.#", "##.", "#.#", "##."}},
      {'C', {".##", "#..", "#..", "#..", ".##"}}, {'D', {"##.", "#.#", "#.#", "#.#", "##."}},
      {'E', {"###", "#..", "##.", "#..", "###"}}, {'F', {"###", "#..", "##.", "#..", "#.."}},
      {'G', {".##", "#..", "#.#", "#.#", ".##"}}, {'H', {"#.#", "#.#", "###", "#.#", "#.#"}},
      {'I', {"###", ".#.", ".#.", ".#.", "###"}}, {'J', {"..#", "..#", "..#", "#.#", ".#."}},
      {'K', {"#.#", "#.#", "##.", "#.#", "#.#"}}, {'L', {"#..", "#..", "#..", "#..", "###"}},
      {'M', {"#.#", "###", "###", "#.#", "#.#"}}, {'N', {"##.", "#.#", "#.#", "#.#", "#.#"}},
      {'O', {".#.", "#.#", "#.#", "#.#", ".#."}}, {'P', {"##.", "#.#", "##.", "#..", "#.."}},
      {'Q', {".#.", "#.#", "#.#", "##.", ".##"}}, {'R', {"##.", "#.#", "##.", "#.#", "#.#"}},
      {'S', {".##", "#..", ".#.", "..#", "##."}}, {'T', {"###", ".#.", ".#.", ".#.", ".#."}},
      {'U', {"#.#", "#.#", "#.#", "#.#", "###"}}, {'V', {"#.#", "#.#", "#.#", "#.#", ".#."}},
      {'W', {"#.#", "#.#", "###", "###", "#.#"}}, {'X', {"#.#", "#.#", ".#.", "#.#", "#.#"}},
      {'Y', {"#.#", "#.#", ".#.", ".#.", ".#."}}, {'Z', {"###", "..#", ".#.", "#..", "###"}},
      {'.', {"...", "...", "...", "...", ".#."}}, {'-', {"...", "...", "###", "...", "..."}},
      {'+', {"...", ".#.", "###", ".#.", "..."}}, {':', {"...", ".#.", "...", ".#.", "..."}},
      {'(', {"..#", ".#.", ".#.", ".#.", "..#"}}, {')', {"#..", ".#.", ".#.", ".#.", "#.."}},
      {'/', {"..#", "..#", ".#.", "#..", "#.."}}};
  return f;
}

constexpr int kScale = 2;
constexpr int kGlyphW = 4 * kScale;  // 3 columns + 1 gap

struct Canvas {
  int64_t w, h;
  std::vector<uint8_t> rgb;  // planar [3][h][w]
  void set(int64_t x, int64_t y, const std::array<uint8_t, 3>& c) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    for (int k = 0; k < 3; ++k) rgb[static_cast<size_t>((k * h + y) * w + x)] = c[k];
  }
  void line(double x0, double y0, double x1, double y1, const std::array<uint8_t, 3>& c) {
    const double n = std::max({std::abs(x1 - x0), std::abs(y1 - y0), 1.0});
    for (int i = 0; i <= static_cast<int>(n); ++i) {
      const double t = i / n;
      const auto x = static_cast<int64_t>(std::lround(x0 + t * (x1 - x0)));
      const auto y = static_cast<int64_t>(std::lround(y0 + t * (y1 - y0)));
      set(x, y, c);
      set(x, y + 1, c);
    }
  }
  int64_t text(int64_t x, int64_t y, const std::string& s, const std::array<uint8_t, 3>& c) {
    for (char ch : s) {
      const char up = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      const auto it = font().find(up);
      if (it != font().end()) {
        for (int r = 0; r < 5; ++r)
          for (int q = 0; q < 3; ++q)
            if (it->second[static_cast<size_t>(r)][q] == '#')
              for (int a = 0; a < kScale; ++a)
                for (int b = 0; b < kScale; ++b) set(x + q * kScale + b, y + r * kScale + a, c);
      }
      x += kGlyphW;
    }
    return x;
  }
};

}  // namespace

std::string plot_number(double v) {
  if (!std::isfinite(v)) return "-";
  const double a = std::abs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e5)) return fmt::format("{:.2e}", v);
  return fmt::format("{:.4g}", v);
}

Image render_plot(const std::vector<PlotPanel>& panels, int64_t width, int64_t panel_height) {
  const int64_t n = std::max<int64_t>(1, static_cast<int64_t>(panels.size()));
  Canvas cv{width, panel_height * n, {}};
  cv.rgb.assign(static_cast<size_t>(3 * cv.w * cv.h), 255);
  const std::array<uint8_t, 3> black{0, 0, 0}, grey{220, 220, 220}, dark{90, 90, 90};
  for (int64_t p = 0; p < static_cast<int64_t>(panels.size()); ++p) {
    const PlotPanel& panel = panels[static_cast<size_t>(p)];
    const int64_t top = p * panel_height;
    const int64_t left = 90, right = width - 20, y0 = top + 30, y1 = top + panel_height - 20;
    // Ranges.
    double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
    auto ty = [&](double y) { return panel.log_y ? std::log10(y) : y; };
    for (const auto& s : panel.series)
      for (const auto& [x, y] : s.points) {
        if (!std::isfinite(x) || !std::isfinite(y) || (panel.log_y && y <= 0)) continue;
        xmin = std::min(xmin, x), xmax = std::max(xmax, x);
        ymin = std::min(ymin, ty(y)), ymax = std::max(ymax, ty(y));
      }
    // Frame and grid.
    for (int g = 0; g <= 4; ++g) {
      const double yy = y0 + (y1 - y0) * g / 4.0;
      cv.line(left, yy, right, yy, g == 0 || g == 4 ? black : grey);
    }
    cv.line(left, y0, left, y1, black);
    cv.line(right, y0, right, y1, black);
    // Title and legend.
    int64_t tx = cv.text(left, top + 8, panel.title, black);
    for (const auto& s : panel.series) tx = cv.text(tx + kGlyphW * 2, top + 8, s.name, s.color);
    if (!std::isfinite(xmin)) continue;
    if (xmax == xmin) xmax = xmin + 1;
    if (ymax == ymin) {
      ymax += std::max(std::abs(ymax) * 0.05, 1e-12);
      ymin -= std::max(std::abs(ymin) * 0.05, 1e-12);
    }
    auto label = [&](double v) { return plot_number(panel.log_y ? std::pow(10.0, v) : v); };
    cv.text(4, y0, label(ymax), dark);
    cv.text(4, y1 - 10, label(ymin), dark);
    const std::string xl = plot_number(xmax);
    cv.text(right - static_cast<int64_t>(xl.size()) * kGlyphW, y1 + 6, xl, dark);
    cv.text(left, y1 + 6, plot_number(xmin), dark);
    auto px = [&](double x) { return left + (x - xmin) / (xmax - xmin) * (right - left); };
    auto py = [&](double y) { return y1 - (ty(y) - ymin) / (ymax - ymin) * (y1 - y0); };
    for (const auto& s : panel.series) {
      bool have = false;
      double lx = 0, ly = 0;
      for (const auto& [x, y] : s.points) {
        if (!std::isfinite(x) || !std::isfinite(y) || (panel.log_y && y <= 0)) continue;
        const double X = px(x), Y = py(y);
        if (have) {
          cv.line(lx, ly, X, Y, s.color);
        } else {
          cv.set(static_cast<int64_t>(X), static_cast<int64_t>(Y), s.color);
        }
        lx = X, ly = Y, have = true;
      }
    }
  }
  Image out = Image::zeros(DType::U8, Shape{3, 1, cv.h, cv.w});
  std::copy(cv.rgb.begin(), cv.rgb.end(), out.data_as<uint8_t>());
  return out;
}

}  // namespace umamba::train
