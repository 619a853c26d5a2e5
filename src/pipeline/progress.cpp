// Progress reporting (see progress.h).
#include "pipeline/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace umamba::pipeline {

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

ProgressMode progress_mode_from_name(const std::string& name) {
  if (name == "auto") return ProgressMode::Auto;
  if (name == "bar") return ProgressMode::Bar;
  if (name == "lines") return ProgressMode::Lines;
  if (name == "off") return ProgressMode::Off;
  fail("progress mode must be auto, bar, lines or off, got '{}'", name);
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(std::llround(s));
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

std::string progress_bar(double fraction, int width) {
  const int inner = std::max(1, width - 2);
  fraction = std::clamp(std::isfinite(fraction) ? fraction : 0.0, 0.0, 1.0);
  const int filled = static_cast<int>(std::floor(fraction * inner));
  std::string bar = "[";
  for (int i = 0; i < inner; ++i) {
    if (i < filled) {
      bar += '=';
    } else if (i == filled && filled < inner) {
      bar += '>';
    } else {
      bar += ' ';
    }
  }
  return bar + "]";
}

std::string progress_text(const ProgressCounts& c, double elapsed_s, double tile_elapsed_s) {
  std::string text = fmt::format("{}/{} files", c.files_finished + c.files_skipped, c.files_total);
  if (c.files_failed > 0 || c.files_skipped > 0) {
    text += fmt::format(" ({} failed, {} skipped)", c.files_failed, c.files_skipped);
  }
  text += fmt::format(", tiles {}/{}", c.tiles_done, c.tiles_total);
  const double rate = tile_elapsed_s > 0 ? static_cast<double>(c.tiles_done) / tile_elapsed_s : 0;
  if (rate > 0) {
    text += fmt::format(", {:.3g} tiles/s, ETA {}", rate,
                        format_duration(static_cast<double>(c.tiles_total - c.tiles_done) / rate));
  }
  text += fmt::format(", elapsed {}", format_duration(elapsed_s));
  return text;
}

Progress::Progress(int64_t files_total, int64_t tiles_total, ProgressMode mode, double interval_s,
                   std::FILE* out, Clock clock)
    : mode_(mode), interval_s_(interval_s), out_(out), clock_(std::move(clock)) {
  if (mode_ == ProgressMode::Auto) {
    mode_ = (out_ != nullptr && ::isatty(::fileno(out_))) ? ProgressMode::Bar : ProgressMode::Lines;
  }
  if (out_ == nullptr) mode_ = ProgressMode::Off;
  c_.files_total = files_total;
  c_.tiles_total = tiles_total;
  start_ = now();
}

Progress::~Progress() {
  try {
    finish();
  } catch (...) {
  }
}

double Progress::now() const {
  return clock_ ? clock_() : steady_seconds();
}

void Progress::file_started(const std::string& name) {
  std::lock_guard lock(mutex_);
  current_ = name;
  if (first_tile_ < 0) first_tile_ = now();
  draw_locked(false);
}

void Progress::tiles_done(int64_t tiles) {
  std::lock_guard lock(mutex_);
  c_.tiles_done = std::min(c_.tiles_total, c_.tiles_done + std::max<int64_t>(0, tiles));
  draw_locked(false);
}

void Progress::file_finished(bool ok, int64_t tiles_left) {
  std::lock_guard lock(mutex_);
  ++c_.files_finished;
  if (!ok) ++c_.files_failed;
  c_.tiles_done = std::min(c_.tiles_total, c_.tiles_done + std::max<int64_t>(0, tiles_left));
  draw_locked(false);
}

void Progress::file_skipped(int64_t tiles) {
  std::lock_guard lock(mutex_);
  ++c_.files_skipped;
  c_.tiles_total = std::max(c_.tiles_done, c_.tiles_total - std::max<int64_t>(0, tiles));
  draw_locked(false);
}

void Progress::message(const std::string& line) {
  std::lock_guard lock(mutex_);
  if (mode_ == ProgressMode::Off) return;
  if (bar_visible_) std::fputs("\r\033[K", out_);
  std::fputs(line.c_str(), out_);
  std::fputc('\n', out_);
  bar_visible_ = false;
  if (mode_ == ProgressMode::Bar) draw_locked(true);
  std::fflush(out_);
}

void Progress::finish() {
  std::lock_guard lock(mutex_);
  if (finished_ || mode_ == ProgressMode::Off) {
    finished_ = true;
    return;
  }
  draw_locked(true);
  if (mode_ == ProgressMode::Bar && bar_visible_) std::fputc('\n', out_);
  bar_visible_ = false;
  finished_ = true;
  std::fflush(out_);
}

ProgressCounts Progress::counts() const {
  std::lock_guard lock(mutex_);
  return c_;
}

void Progress::draw_locked(bool force) {
  if (mode_ == ProgressMode::Off || finished_) return;
  const double t = now();
  const double min_gap = mode_ == ProgressMode::Bar ? 0.2 : interval_s_;
  if (!force && t - last_draw_ < min_gap) return;
  last_draw_ = t;
  const double tile_elapsed = first_tile_ < 0 ? 0 : t - first_tile_;
  const std::string text = progress_text(c_, t - start_, tile_elapsed);
  if (mode_ == ProgressMode::Lines) {
    std::fprintf(out_, "progress: %s\n", text.c_str());
  } else {
    const double fraction =
        c_.tiles_total > 0
            ? static_cast<double>(c_.tiles_done) / static_cast<double>(c_.tiles_total)
        : c_.files_total > 0 ? static_cast<double>(c_.files_finished + c_.files_skipped) /
                                   static_cast<double>(c_.files_total)
                             : 1.0;
    std::string name = current_;
    if (name.size() > 30) name = "..." + name.substr(name.size() - 27);
    std::fprintf(out_, "\r\033[K%s %s  %s", progress_bar(fraction, 22).c_str(), text.c_str(),
                 name.c_str());
    bar_visible_ = true;
  }
  std::fflush(out_);
}

}  // namespace umamba::pipeline
