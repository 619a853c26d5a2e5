// `umamba bench ccl` (see bench_ccl.h).
#include "pipeline/bench_ccl.h"

#include <fmt/format.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "postprocess/ccl.h"
#include "postprocess/opencv_peer.h"

namespace umamba::pipeline {

namespace {

namespace fs = std::filesystem;
using postprocess::Extents;

// Noise -> separable Gaussian blur (mirror border, radius 3 sigma) -> threshold at the median.
std::vector<uint8_t> random_blobs(const Extents& e, double sigma, uint64_t seed) {
  const int64_t n = e.pixels();
  std::vector<float> f(static_cast<size_t>(n));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (auto& v : f) v = u(rng);
  const int radius = static_cast<int>(std::ceil(3 * sigma));
  std::vector<float> kernel(2 * radius + 1);
  float sum = 0;
  for (int k = -radius; k <= radius; ++k)
    sum += kernel[k + radius] = static_cast<float>(std::exp(-0.5 * k * k / (sigma * sigma)));
  for (auto& k : kernel) k /= sum;
  auto blur = [&](int64_t length, int64_t stride, int64_t lines, auto base_of) {
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, lines), [&](const auto& range) {
      std::vector<float> line(static_cast<size_t>(length)), out(static_cast<size_t>(length));
      for (int64_t l = range.begin(); l < range.end(); ++l) {
        const int64_t base = base_of(l);
        for (int64_t i = 0; i < length; ++i) line[i] = f[base + i * stride];
        for (int64_t i = 0; i < length; ++i) {
          float s = 0;
          for (int k = -radius; k <= radius; ++k) {
            int64_t j = i + k;
            if (j < 0) j = -j - 1;
            if (j >= length) j = 2 * length - j - 1;
            j = std::clamp<int64_t>(j, 0, length - 1);
            s += kernel[k + radius] * line[j];
          }
          out[i] = s;
        }
        for (int64_t i = 0; i < length; ++i) f[base + i * stride] = out[i];
      }
    });
  };
  blur(e.x, 1, e.z * e.y, [&](int64_t l) { return l * e.x; });
  blur(e.y, e.x, e.z * e.x, [&](int64_t l) { return (l / e.x) * e.y * e.x + l % e.x; });
  if (e.z > 1) blur(e.z, e.y * e.x, e.y * e.x, [&](int64_t l) { return l; });
  std::vector<float> sorted = f;
  std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.end());
  const float median = sorted[static_cast<size_t>(n / 2)];
  std::vector<uint8_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = f[i] > median ? 1 : 0;
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// CPU time of the calling thread, ms: unaffected by other processes on a loaded machine.
double thread_cpu_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

constexpr const char* kScipyScript = R"(import json, sys, time
import numpy as np
from scipy import ndimage as ndi
path, shape, conns, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
a = np.fromfile(path, dtype=np.uint8).reshape(tuple(int(s) for s in shape.split("x")))
rank = {4: 1, 8: 2, 6: 1, 18: 2, 26: 3}
out = {}
for c in (int(c) for c in conns.split(",")):
    s = ndi.generate_binary_structure(a.ndim, rank[c])
    ts, cs, n = [], [], 0
    for _ in range(repeats):
        t, c0 = time.perf_counter(), time.process_time()
        _, n = ndi.label(a, structure=s)
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c0)
    out[str(c)] = [float(np.median(ts)) * 1e3, float(np.median(cs)) * 1e3, int(n)]
print(json.dumps(out))
)";

struct PeerTiming {
  double wall_ms = 0, cpu_ms = 0;
  uint32_t components = 0;
};

// scipy.ndimage.label timings per connectivity; empty when unavailable.
std::map<int, PeerTiming> scipy_peer(const std::string& python, const std::vector<uint8_t>& image,
                                     const Extents& e, const std::vector<int>& conns, int repeats) {
  std::map<int, PeerTiming> result;
  if (python.empty()) return result;
  const fs::path dir = fs::temp_directory_path();
  const std::string stem = fmt::format("umamba-bench-ccl-{}", ::getpid());
  const fs::path raw = dir / (stem + ".raw"), script = dir / (stem + ".py");
  {
    std::ofstream(raw, std::ios::binary)
        .write(reinterpret_cast<const char*>(image.data()),
               static_cast<std::streamsize>(image.size()));
    std::ofstream(script) << kScipyScript;
  }
  std::string shape =
      e.is_3d() ? fmt::format("{}x{}x{}", e.z, e.y, e.x) : fmt::format("{}x{}", e.y, e.x);
  std::string list;
  for (int c : conns) {
    if (!list.empty()) list += ',';
    list += std::to_string(c);
  }
  const std::string cmd = fmt::format("'{}' '{}' '{}' {} {} {} 2>&1", python, script.string(),
                                      raw.string(), shape, list, repeats);
  std::string output;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buffer[4096];
    while (size_t got = std::fread(buffer, 1, sizeof buffer, p)) output.append(buffer, got);
    const int status = ::pclose(p);
    if (status != 0) {
      log::warn("bench ccl: the SciPy peer failed ({}): {}", python, output);
      output.clear();
    }
  }
  std::error_code ec;
  fs::remove(raw, ec);
  fs::remove(script, ec);
  if (output.empty()) return result;
  try {
    const auto j = nlohmann::json::parse(output.substr(output.rfind('{')));
    for (int c : conns) {
      const auto& v = j.at(std::to_string(c));
      result[c] = {v.at(0).get<double>(), v.at(1).get<double>(), v.at(2).get<uint32_t>()};
    }
  } catch (const std::exception& err) {
    log::warn("bench ccl: cannot read the SciPy peer's output ({}): {}", err.what(), output);
    result.clear();
  }
  return result;
}

struct Row {
  Row(std::string what_, std::string method_, int threads_)
      : what(std::move(what_)), method(std::move(method_)), threads(threads_) {}
  std::string what, method;
  int threads = 1;
  std::function<void()> before;   // untimed set-up of each run (OpenCV's thread count)
  std::function<uint32_t()> run;  // empty for a peer measured elsewhere
  std::vector<double> wall, cpu;
  double wall_ms = 0, cpu_ms = 0;  // medians; cpu only for one thread
  int64_t pixels = 0;
  uint32_t components = 0;
};

}  // namespace

std::string run_bench_ccl(const BenchCclOptions& o) {
  UMAMBA_CHECK(o.repeats >= 1, "bench ccl: repeats must be >= 1, got {}", o.repeats);
  UMAMBA_CHECK(o.size_2d >= 16 && o.size_3d >= 8, "bench ccl: sizes too small ({}², {}³)",
               o.size_2d, o.size_3d);
  UMAMBA_CHECK(o.threads >= 1, "bench ccl: threads must be >= 1, got {}", o.threads);
  std::string report = fmt::format(
      "umamba bench ccl: median of {} runs; machine: {} hardware threads, {}\n"
      "inputs: white noise, Gaussian blur (sigma 4 px 2D, 2 voxels 3D), thresholded at the "
      "median\n",
      o.repeats, std::thread::hardware_concurrency(), cpu_model());
  bool agree = true;
  std::vector<std::string> lines;
  auto ratio = [](double peer, double ours) {
    return peer > 0 && ours > 0 ? fmt::format("{:.2f}x", peer / ours) : std::string("-");
  };

  struct Case {
    Extents e;
    double sigma;
    std::vector<int> conns;
  };
  const std::vector<Case> cases = {{{1, o.size_2d, o.size_2d}, 4.0, {8, 4}},
                                   {{o.size_3d, o.size_3d, o.size_3d}, 2.0, {26, 6}}};
  for (const Case& c : cases) {
    log::info("bench ccl: generating a {}x{}x{} random-blob image", c.e.z, c.e.y, c.e.x);
    const std::vector<uint8_t> image = random_blobs(c.e, c.sigma, o.seed);
    const auto scipy = scipy_peer(o.python, image, c.e, c.conns, o.repeats);
    std::vector<uint32_t> out(image.size());
    std::vector<int32_t> cv_out(c.e.is_3d() ? 0 : image.size());
    for (int conn : c.conns) {
      const std::string what = c.e.is_3d() ? fmt::format("3D {}^3 {}-conn", c.e.x, conn)
                                           : fmt::format("2D {}^2 {}-conn", c.e.x, conn);
      std::vector<int> thread_counts{1};
      if (o.threads > 1) thread_counts.push_back(o.threads);
      std::vector<Row> rows;
      for (int threads : thread_counts) {
        postprocess::CclOptions co;
        co.connectivity = postprocess::connectivity_from_int(conn, c.e.is_3d());
        co.threads = threads;
        Row r{what, "umamba run-based", threads};
        r.run = [&image, &out, e = c.e, co] {
          return postprocess::label_components(image.data(), e, out.data(), co);
        };
        rows.push_back(std::move(r));
      }
      if (!c.e.is_3d() && postprocess::opencv_peer::available()) {
        for (int threads : thread_counts) {
          Row r{what, "OpenCV connectedComponents", threads};
          r.run = [&image, &cv_out, e = c.e, conn] {
            return postprocess::opencv_peer::label(image.data(), e.y, e.x, conn, cv_out.data());
          };
          // Switching OpenCV's pool, then one untimed run so it is up before the timed one.
          r.before = [run = r.run, threads] {
            postprocess::opencv_peer::set_threads(threads);
            run();
          };
          rows.push_back(std::move(r));
        }
      }
      // Repeats outermost, so that every method sees the same machine load.
      for (int k = 0; k < o.repeats; ++k) {
        for (Row& r : rows) {
          if (r.before) r.before();
          const double c0 = thread_cpu_ms();
          const auto t0 = std::chrono::steady_clock::now();
          r.components = r.run();
          r.wall.push_back(
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count());
          r.cpu.push_back(thread_cpu_ms() - c0);
        }
      }
      double opencv_wall = 0, opencv_cpu = 0;
      for (Row& r : rows) {
        r.pixels = c.e.pixels();
        r.wall_ms = median(r.wall);
        r.cpu_ms = r.threads == 1 ? median(r.cpu) : 0;
        if (r.method.starts_with("OpenCV") && r.threads == 1) {
          opencv_wall = r.wall_ms;
          opencv_cpu = r.cpu_ms;
        }
      }
      double scipy_wall = 0, scipy_cpu = 0;
      if (scipy.count(conn)) {
        const PeerTiming& t = scipy.at(conn);
        scipy_wall = t.wall_ms;
        scipy_cpu = t.cpu_ms;
        Row r{what, "scipy.ndimage.label", 1};
        r.wall_ms = t.wall_ms;
        r.cpu_ms = t.cpu_ms;
        r.pixels = c.e.pixels();
        r.components = t.components;
        rows.push_back(std::move(r));
      }
      for (const Row& r : rows) {
        agree = agree && r.components == rows.front().components;
        lines.push_back(
            fmt::format("{:<17} {:<27} {:>3} {:>8.1f} {:>8} {:>7.1f} {:>6} {:>7} {:>7} {:>7} {:>7}",
                        r.what, r.method, r.threads, r.wall_ms,
                        r.cpu_ms > 0 ? fmt::format("{:.1f}", r.cpu_ms) : std::string("-"),
                        static_cast<double>(r.pixels) / (r.wall_ms * 1e3), r.components,
                        ratio(opencv_wall, r.wall_ms), ratio(scipy_wall, r.wall_ms),
                        ratio(opencv_cpu, r.cpu_ms), ratio(scipy_cpu, r.cpu_ms)));
      }
    }
  }
  report += fmt::format("{:<17} {:<27} {:>3} {:>8} {:>8} {:>7} {:>6} {:>7} {:>7} {:>7} {:>7}\n",
                        "case", "method", "thr", "wall ms", "cpu ms", "Mvox/s", "comps", "OpenCV",
                        "SciPy", "OpenCV", "SciPy");
  report += fmt::format("{:<83}{:<15} {}\n", "", "(wall ratios)", "(cpu ratios)");
  for (const auto& l : lines) report += l + "\n";
  report += fmt::format(
      "wall ms / cpu ms: medians of wall-clock time and of the calling thread's CPU time (1 "
      "thread only; SciPy: process CPU time); Mvox/s from wall time. Ratios: the peer's median "
      "divided by this row's (above 1: this row is faster), against OpenCV on 1 thread{}{}. The "
      "methods run interleaved, repeat by repeat; CPU-time ratios are the robust ones on a "
      "loaded machine\n",
      postprocess::opencv_peer::available() ? "" : " (this build has no OpenCV)",
      o.python.empty() ? "; no SciPy peer (pass --python)" : "");
  report += fmt::format("component counts agree across methods: {}\n", agree ? "yes" : "NO");
  return report;
}

}  // namespace umamba::pipeline
