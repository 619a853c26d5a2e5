// Progress of a batch over files and tiles, for people at a terminal and for batch logs.
//
// On a terminal (standard error is a TTY) one status line is redrawn in place:
//   [=========>          ] 12/40 files  tiles 3,200/11,000  2.1 tiles/s  ETA 1h02m  a.tif
// Elsewhere (SLURM logs, pipes) a plain line is written every `interval` seconds and when the run
// ends, so logs stay readable:
//   progress: 12/40 files (1 failed, 3 skipped), tiles 3200/11000, 2.1 tiles/s, ETA 1h02m
// Per-file messages go through message(), which clears the bar, prints the line and redraws.
// ETA = remaining tiles / tile rate since the first tile (tiles are the unit of work: a large
// file counts for more than a small one). Thread-safe: several workers report at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>

namespace umamba::pipeline {

enum class ProgressMode { Auto, Bar, Lines, Off };
ProgressMode progress_mode_from_name(const std::string& name);  // "auto", "bar", "lines", "off"

struct ProgressCounts {
  int64_t files_total = 0, files_finished = 0, files_failed = 0, files_skipped = 0;
  int64_t tiles_total = 0, tiles_done = 0;
};

// "1h02m", "3m20s", "12s"; "?" for negative or non-finite values.
std::string format_duration(double seconds);
// The status text for the counts after `elapsed_s` (no bar, no colour).
std::string progress_text(const ProgressCounts& c, double elapsed_s, double tile_elapsed_s);
// "[=====>    ]" `width` characters wide including the brackets.
std::string progress_bar(double fraction, int width);

class Progress {
 public:
  using Clock = std::function<double()>;  // seconds, monotonic
  // `out`: where to draw (stderr by default). Auto chooses Bar when `out` is a terminal.
  Progress(int64_t files_total, int64_t tiles_total, ProgressMode mode, double interval_s = 30.0,
           std::FILE* out = stderr, Clock clock = {});
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  ProgressMode mode() const { return mode_; }

  void file_started(const std::string& name);
  void tiles_done(int64_t tiles);  // more tiles of a running file are done
  // A file ended; its remaining estimated tiles (`tiles_left`, may be 0) are counted as done.
  void file_finished(bool ok, int64_t tiles_left = 0);
  // A file skipped before work (already done): its tiles leave the total.
  void file_skipped(int64_t tiles);
  // A line for the log, printed without breaking the bar.
  void message(const std::string& line);
  // Final line (Lines mode) or the bar's last state and a newline (Bar mode).
  void finish();

  ProgressCounts counts() const;

 private:
  void draw_locked(bool force);
  double now() const;

  ProgressMode mode_;
  double interval_s_;
  std::FILE* out_;
  Clock clock_;
  mutable std::mutex mutex_;
  ProgressCounts c_;
  std::string current_;
  double start_ = 0, first_tile_ = -1, last_draw_ = -1e300;
  bool bar_visible_ = false, finished_ = false;
};

}  // namespace umamba::pipeline
