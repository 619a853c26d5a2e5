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
#include <filesystem>
#include <fstream>
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

template <typename Fn>
double median_ms(int repeats, Fn&& fn) {
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
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
    ts, n = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        _, n = ndi.label(a, structure=s)
        ts.append(time.perf_counter() - t)
    out[str(c)] = [float(np.median(ts)) * 1e3, int(n)]
print(json.dumps(out))
)";

// scipy.ndimage.label timings {connectivity: (median ms, components)}; empty when unavailable.
std::map<int, std::pair<double, uint32_t>> scipy_peer(const std::string& python,
                                                      const std::vector<uint8_t>& image,
                                                      const Extents& e,
                                                      const std::vector<int>& conns, int repeats) {
  std::map<int, std::pair<double, uint32_t>> result;
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
      result[c] = {v.at(0).get<double>(), v.at(1).get<uint32_t>()};
    }
  } catch (const std::exception& err) {
    log::warn("bench ccl: cannot read the SciPy peer's output ({}): {}", err.what(), output);
    result.clear();
  }
  return result;
}

struct Row {
  std::string what, method;
  int threads = 1;
  double ms = 0;
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
  auto table_line = [&](const Row& r, double opencv_ms, double scipy_ms) {
    const double mvx = static_cast<double>(r.pixels) / (r.ms * 1e3);
    lines.push_back(fmt::format("{:<18} {:<28} {:>7} {:>10.1f} {:>9.1f} {:>11} {:>10} {:>10}",
                                r.what, r.method, r.threads, r.ms, mvx, r.components,
                                opencv_ms > 0 ? fmt::format("{:.2f}x", opencv_ms / r.ms) : "-",
                                scipy_ms > 0 ? fmt::format("{:.2f}x", scipy_ms / r.ms) : "-"));
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
        Row r{what, "umamba run-based", threads, 0, c.e.pixels(), 0};
        r.ms = median_ms(o.repeats, [&] {
          r.components = postprocess::label_components(image.data(), c.e, out.data(), co);
        });
        rows.push_back(r);
      }
      double opencv_1t = 0;
      if (!c.e.is_3d() && postprocess::opencv_peer::available()) {
        for (int threads : thread_counts) {
          Row r{what, "OpenCV connectedComponents", threads, 0, c.e.pixels(), 0};
          r.ms = median_ms(o.repeats, [&] {
            r.components = postprocess::opencv_peer::label(image.data(), c.e.y, c.e.x, conn,
                                                           threads, cv_out.data());
          });
          if (threads == 1) opencv_1t = r.ms;
          rows.push_back(r);
        }
      }
      double scipy_ms = 0;
      if (scipy.count(conn)) {
        scipy_ms = scipy.at(conn).first;
        rows.push_back(
            Row{what, "scipy.ndimage.label", 1, scipy_ms, c.e.pixels(), scipy.at(conn).second});
      }
      for (const Row& r : rows) {
        agree = agree && r.components == rows.front().components;
        table_line(r, opencv_1t, scipy_ms);
      }
    }
  }
  report += fmt::format("{:<18} {:<28} {:>7} {:>10} {:>9} {:>11} {:>10} {:>10}\n", "case", "method",
                        "threads", "median ms", "Mvox/s", "components", "vs OpenCV", "vs SciPy");
  for (const auto& l : lines) report += l + "\n";
  report += fmt::format(
      "ratios: the peer's time divided by this row's (above 1: this row is faster); 'vs OpenCV' "
      "against OpenCV on 1 thread{}{}\n",
      postprocess::opencv_peer::available() ? "" : " (this build has no OpenCV)",
      o.python.empty() ? "; no SciPy peer (pass --python)" : "");
  report += fmt::format("component counts agree across methods: {}\n", agree ? "yes" : "NO");
  return report;
}

}  // namespace umamba::pipeline
