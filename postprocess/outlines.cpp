// Outlines by crack following, GeoJSON, overlays (see outlines.h for the method and limits).
#include "postprocess/outlines.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"

namespace umamba::postprocess {

namespace {

Image labels_u32(const Image& labels, const char* what) {
  UMAMBA_CHECK(!labels.empty(), "{}: the label image is empty", what);
  UMAMBA_CHECK(labels.channels() == 1 && labels.depth() == 1,
               "{}: labels must be one 2D channel; got shape {}", what, to_string(labels.shape()));
  UMAMBA_CHECK(!dtype_is_float(labels.dtype()), "{}: labels of dtype {} are floating point", what,
               dtype_name(labels.dtype()));
  return labels.dtype() == DType::U32 ? labels.contiguous() : labels.cast(DType::U32);
}

}  // namespace

std::vector<Outline> trace_outlines(const uint32_t* labels, int64_t height, int64_t width,
                                    bool eight_connected) {
  // First pixel of every label in raster order.
  std::map<uint32_t, int64_t> first;
  for (int64_t p = 0; p < height * width; ++p)
    if (labels[p] != 0) first.try_emplace(labels[p], p);

  std::vector<Outline> out;
  out.reserve(first.size());
  for (const auto& [label, start_pixel] : first) {
    const uint32_t l = label;
    auto inside = [&](int64_t px, int64_t py) {
      return px >= 0 && py >= 0 && px < width && py < height && labels[py * width + px] == l;
    };
    Outline o;
    o.label = l;
    const int64_t x0 = start_pixel % width, y0 = start_pixel / width;
    int64_t vx = x0, vy = y0;
    int dx = 1, dy = 0;  // along the top edge of the first pixel, the object below (right-hand)
    o.vertices.push_back({vx, vy});
    while (true) {
      vx += dx;
      vy += dy;
      const int rx = -dy, ry = dx;  // right-hand normal (y down)
      // Pixels whose centres are v + (d + r)/2 (ahead-right) and v + (d - r)/2 (ahead-left).
      const bool ahead_right = inside(vx + (dx + rx - 1) / 2, vy + (dy + ry - 1) / 2);
      const bool ahead_left = inside(vx + (dx - rx - 1) / 2, vy + (dy - ry - 1) / 2);
      int ndx, ndy;
      if (ahead_left && (ahead_right || eight_connected)) {
        ndx = -rx;  // turn left
        ndy = -ry;
      } else if (ahead_right) {
        ndx = dx;
        ndy = dy;
      } else {
        ndx = rx;  // turn right
        ndy = ry;
      }
      if (vx == x0 && vy == y0 && ndx == 1 && ndy == 0) break;
      if (ndx != dx || ndy != dy) o.vertices.push_back({vx, vy});
      dx = ndx;
      dy = ndy;
    }
    o.vertices.push_back({x0, y0});
    out.push_back(std::move(o));
  }
  return out;
}

std::vector<Outline> trace_outlines(const Image& labels, bool eight_connected) {
  const Image l = labels_u32(labels, "outlines");
  return trace_outlines(l.data_as<uint32_t>(), l.height(), l.width(), eight_connected);
}

double polygon_area(const Outline& outline) {
  double twice = 0;
  const auto& v = outline.vertices;
  for (size_t i = 0; i + 1 < v.size(); ++i)
    twice += static_cast<double>(v[i][0] * v[i + 1][1] - v[i + 1][0] * v[i][1]);
  return twice / 2;
}

std::string outlines_geojson(const std::vector<Outline>& outlines) {
  std::string out = "{\"type\":\"FeatureCollection\",\"features\":[";
  for (size_t i = 0; i < outlines.size(); ++i) {
    const Outline& o = outlines[i];
    if (i) out += ',';
    out += "\n{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[";
    for (size_t k = 0; k < o.vertices.size(); ++k) {
      if (k) out += ',';
      out += fmt::format("[{},{}]", o.vertices[k][0], o.vertices[k][1]);
    }
    out += fmt::format(
        "]]}},\"properties\":{{\"objectType\":\"detection\",\"name\":\"{}\","
        "\"measurements\":{{\"label\":{}}}}}}}",
        o.label, o.label);
  }
  out += "\n]}\n";
  return out;
}

Image overlay_outlines(const Image& image, const Image& labels) {
  const Image l = labels_u32(labels, "overlay");
  UMAMBA_CHECK(!image.empty() && image.depth() == 1, "overlay: the image must be 2D; got shape {}",
               to_string(image.shape()));
  UMAMBA_CHECK(image.height() == l.height() && image.width() == l.width(),
               "overlay: the image ({}) and the labels ({}) differ in size",
               to_string(image.shape()), to_string(l.shape()));
  const int64_t h = l.height(), w = l.width(), n = h * w;
  Image rgb = Image::zeros(DType::U8, Shape{3, 1, h, w});
  uint8_t* o = rgb.data_as<uint8_t>();
  const Image f = image.cast(DType::F32);
  const float* d = f.data_as<float>();
  const int64_t channels = std::min<int64_t>(3, image.channels());
  for (int64_t c = 0; c < 3; ++c) {
    const int64_t src = std::min(c, channels - 1);
    std::vector<float> values(d + src * n, d + (src + 1) * n);
    const size_t lo_k = static_cast<size_t>(0.005 * (n - 1));
    const size_t hi_k = static_cast<size_t>(0.995 * (n - 1));
    std::nth_element(values.begin(), values.begin() + lo_k, values.end());
    const float lo = values[lo_k];
    std::nth_element(values.begin(), values.begin() + hi_k, values.end());
    const float hi = values[hi_k];
    const float scale = hi > lo ? 255.0f / (hi - lo) : 0.0f;
    for (int64_t p = 0; p < n; ++p)
      o[c * n + p] =
          static_cast<uint8_t>(std::clamp((d[src * n + p] - lo) * scale, 0.0f, 255.0f) + 0.5f);
  }
  const uint32_t* lab = l.data_as<uint32_t>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const int64_t p = y * w + x;
      const uint32_t v = lab[p];
      if (v == 0) continue;
      const bool edge = (x > 0 && lab[p - 1] != v) || (x + 1 < w && lab[p + 1] != v) ||
                        (y > 0 && lab[p - w] != v) || (y + 1 < h && lab[p + w] != v);
      if (!edge) continue;
      // A bright colour from the label: hue by the golden angle.
      const double hue = std::fmod(static_cast<double>(v) * 0.618033988749895, 1.0) * 6.0;
      const int sector = static_cast<int>(hue);
      const double frac = hue - sector;
      const uint8_t up = static_cast<uint8_t>(255 * frac),
                    down = static_cast<uint8_t>(255 * (1 - frac));
      const uint8_t table[6][3] = {{255, up, 0},   {down, 255, 0}, {0, 255, up},
                                   {0, down, 255}, {up, 0, 255},   {255, 0, down}};
      for (int c = 0; c < 3; ++c) o[c * n + p] = table[sector % 6][c];
    }
  rgb.geometry() = image.geometry();
  return rgb;
}

}  // namespace umamba::postprocess
