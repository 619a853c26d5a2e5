// Tests of the synthetic cell generator against plain reference implementations written here:
// brute-force labelling over every cell at every voxel, a whole-image flood fill, the intensity
// model evaluated voxel by voxel, and a direct (non-separable-order) Gaussian convolution.
#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include "core/error.h"
#include "synth/cells.h"
#include "synth/random.h"
#include "synth/render.h"
#include "synth/synth.h"

namespace umamba::synth {
namespace {

// ---- helpers

std::vector<uint32_t> label_vector(const Image& labels) {
  std::vector<uint32_t> out(static_cast<size_t>(labels.element_count()));
  const Image c = labels.contiguous();
  if (c.dtype() == DType::U16) {
    const auto* p = c.data_as<uint16_t>();
    std::copy(p, p + out.size(), out.begin());
  } else {
    const auto* p = c.data_as<uint32_t>();
    std::copy(p, p + out.size(), out.begin());
  }
  return out;
}

std::vector<double> image_channel(const Image& image, int64_t channel) {
  const Image c = image.channel(channel).contiguous().cast(DType::F64);
  const auto* p = c.data_as<double>();
  return std::vector<double>(p, p + c.element_count());
}

struct Dims {
  int64_t z, y, x;
  size_t at(int64_t zz, int64_t yy, int64_t xx) const {
    return static_cast<size_t>((zz * y + yy) * x + xx);
  }
};

// Number of face-connected (4 in 2D, 6 in 3D) components of each label, by a plain flood fill
// over the whole image.
std::map<uint32_t, int> components_per_label(const std::vector<uint32_t>& lab, const Dims& d) {
  std::map<uint32_t, int> count;
  std::vector<uint8_t> seen(lab.size(), 0);
  std::vector<std::array<int64_t, 3>> stack;
  for (int64_t z = 0; z < d.z; ++z)
    for (int64_t y = 0; y < d.y; ++y)
      for (int64_t x = 0; x < d.x; ++x) {
        const size_t i = d.at(z, y, x);
        if (lab[i] == 0 || seen[i]) continue;
        const uint32_t l = lab[i];
        ++count[l];
        seen[i] = 1;
        stack.push_back({z, y, x});
        while (!stack.empty()) {
          const auto q = stack.back();
          stack.pop_back();
          const int64_t nb[6][3] = {{q[0] - 1, q[1], q[2]}, {q[0] + 1, q[1], q[2]},
                                    {q[0], q[1] - 1, q[2]}, {q[0], q[1] + 1, q[2]},
                                    {q[0], q[1], q[2] - 1}, {q[0], q[1], q[2] + 1}};
          for (const auto& n : nb) {
            if (n[0] < 0 || n[0] >= d.z || n[1] < 0 || n[1] >= d.y || n[2] < 0 || n[2] >= d.x)
              continue;
            const size_t j = d.at(n[0], n[1], n[2]);
            if (seen[j] || lab[j] != l) continue;
            seen[j] = 1;
            stack.push_back({n[0], n[1], n[2]});
          }
        }
      }
  return count;
}

// Labels that touch another label through a face.
std::set<uint32_t> touching_labels(const std::vector<uint32_t>& lab, const Dims& d) {
  std::set<uint32_t> out;
  for (int64_t z = 0; z < d.z; ++z)
    for (int64_t y = 0; y < d.y; ++y)
      for (int64_t x = 0; x < d.x; ++x) {
        const uint32_t a = lab[d.at(z, y, x)];
        if (a == 0) continue;
        const int64_t nb[3][3] = {{z + 1, y, x}, {z, y + 1, x}, {z, y, x + 1}};
        for (const auto& n : nb) {
          if (n[0] >= d.z || n[1] >= d.y || n[2] >= d.x) continue;
          const uint32_t b = lab[d.at(n[0], n[1], n[2])];
          if (b != 0 && b != a) {
            out.insert(a);
            out.insert(b);
          }
        }
      }
  return out;
}

// Plain labelling: every cell at every voxel (no bounding boxes, no bands), smallest d (compared
// in single precision, lower label on ties, the centre voxel always its own), then a whole-image
// flood fill from each centre voxel; voxels cut off from their centre become background.
void reference_labels(const Scene& s, std::vector<uint32_t>& lab, std::vector<float>& dist) {
  const Dims d{s.depth, s.height, s.width};
  lab.assign(static_cast<size_t>(s.depth * s.height * s.width), 0);
  dist.assign(lab.size(), 1.0f);
  for (int64_t z = 0; z < d.z; ++z)
    for (int64_t y = 0; y < d.y; ++y)
      for (int64_t x = 0; x < d.x; ++x) {
        float best = 1.0f;
        uint32_t label = 0;
        for (size_t i = 0; i < s.cells.size(); ++i) {
          const Cell& c = s.cells[i];
          double dd;
          if (c.pixel == std::array<int64_t, 3>{z, y, x}) {
            dd = -1.0;
          } else {
            dd = normalized_distance(c, {double(z) * s.aspect - c.centre[0],
                                         double(y) - c.centre[1], double(x) - c.centre[2]});
            if (dd >= 1.0) continue;
          }
          if (static_cast<float>(dd) < best) {
            best = static_cast<float>(dd);
            label = static_cast<uint32_t>(i + 1);
          }
        }
        lab[d.at(z, y, x)] = label;
        dist[d.at(z, y, x)] = best;
      }
  std::vector<uint8_t> keep(lab.size(), 0);
  for (size_t i = 0; i < s.cells.size(); ++i) {
    const auto& c = s.cells[i].pixel;
    const uint32_t l = static_cast<uint32_t>(i + 1);
    std::vector<std::array<int64_t, 3>> stack{c};
    keep[d.at(c[0], c[1], c[2])] = 1;
    while (!stack.empty()) {
      const auto q = stack.back();
      stack.pop_back();
      const int64_t nb[6][3] = {{q[0] - 1, q[1], q[2]}, {q[0] + 1, q[1], q[2]},
                                {q[0], q[1] - 1, q[2]}, {q[0], q[1] + 1, q[2]},
                                {q[0], q[1], q[2] - 1}, {q[0], q[1], q[2] + 1}};
      for (const auto& n : nb) {
        if (n[0] < 0 || n[0] >= d.z || n[1] < 0 || n[1] >= d.y || n[2] < 0 || n[2] >= d.x) continue;
        const size_t j = d.at(n[0], n[1], n[2]);
        if (keep[j] || lab[j] != l) continue;
        keep[j] = 1;
        stack.push_back({n[0], n[1], n[2]});
      }
    }
  }
  for (size_t i = 0; i < lab.size(); ++i)
    if (!keep[i]) {
      lab[i] = 0;
      dist[i] = 1.0f;
    }
}

int64_t reflect_index(int64_t i, int64_t n) {
  while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
  return i;
}

SynthParams small_2d(uint64_t seed = 7) {
  SynthParams p;
  p.height = 96;
  p.width = 128;
  p.seed = seed;
  p.diameter = 11;
  p.density = 0.3;
  p.touching = 0.4;
  return p;
}

SynthParams small_3d(uint64_t seed = 3) {
  SynthParams p;
  p.depth = 20;
  p.height = 48;
  p.width = 56;
  p.seed = seed;
  p.diameter = 12;
  p.density = 0.2;
  p.touching = 0.4;
  p.spacing_xy = 0.5;
  p.spacing_z = 1.0;
  return p;
}

// ---- elementary functions and random numbers

TEST(Synth_Random, elementary_functions_match_libm) {
  for (double x = -40.0; x <= 40.0; x += 0.0137) {
    EXPECT_NEAR(rng::exp(x), std::exp(x), 2e-15 * std::exp(x)) << x;
    EXPECT_NEAR(rng::sin(x), std::sin(x), 2e-15) << x;
    EXPECT_NEAR(rng::cos(x), std::cos(x), 2e-15) << x;
  }
  for (double x = 1e-300; x < 1e300; x *= 1.37) {
    EXPECT_NEAR(rng::log(x), std::log(x), 2e-15 * std::max(1.0, std::abs(std::log(x)))) << x;
  }
  EXPECT_EQ(rng::exp(0.0), 1.0);
  EXPECT_EQ(rng::log(1.0), 0.0);
}

TEST(Synth_Random, normal_quantile_known_values) {
  // Values of the standard normal quantile function (Abramowitz & Stegun table 26.5).
  EXPECT_NEAR(rng::normal_quantile(0.5), 0.0, 1e-12);
  EXPECT_NEAR(rng::normal_quantile(0.975), 1.959963984540054, 1e-8);
  EXPECT_NEAR(rng::normal_quantile(0.01), -2.326347874040841, 1e-8);
  EXPECT_NEAR(rng::normal_quantile(0.999), 3.090232306167814, 1e-8);
  EXPECT_NEAR(rng::normal_quantile(1e-6), -4.753424308822899, 1e-7);
}

TEST(Synth_Random, streams_are_counter_based_and_distinct) {
  const rng::Stream a(1, rng::Purpose::Noise), b(2, rng::Purpose::Noise),
      c(1, rng::Purpose::Poisson);
  // Same (seed, purpose, counter): same value, in any order of evaluation.
  EXPECT_EQ(a.bits(123456789), rng::Stream(1, rng::Purpose::Noise).bits(123456789));
  int equal_ab = 0, equal_ac = 0;
  double sum = 0, sum2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    equal_ab += a.bits(i) == b.bits(i);
    equal_ac += a.bits(i) == c.bits(i);
    const double z = rng::normal(a, i);
    sum += z;
    sum2 += z * z;
  }
  EXPECT_EQ(equal_ab, 0);
  EXPECT_EQ(equal_ac, 0);
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum2 / n, 1.0, 0.015);
}

TEST(Synth_Random, fast_normal_matches_the_quantile_function) {
  const rng::FastNormal& fast = rng::FastNormal::instance();
  const rng::Stream s(9, rng::Purpose::Noise);
  double worst = 0, sum = 0, sum2 = 0;
  int tails = 0;
  const int n = 400000;
  for (int i = 0; i < n; ++i) {
    // The same 53-bit uniform the exact path would use.
    const double u = (static_cast<double>(s.bits(i) >> 11) + 0.5) * 0x1.0p-53;
    const double z = fast(s, i);
    worst = std::max(worst, std::abs(z - rng::normal_quantile(u)));
    tails += std::abs(z) > 2.154;  // |z| beyond the table: Phi^-1(63/64) = 2.1538
    sum += z;
    sum2 += z * z;
  }
  EXPECT_LT(worst, 2e-5);
  EXPECT_NEAR(static_cast<double>(tails) / n, 2.0 / 64.0, 0.002);
  EXPECT_NEAR(sum / n, 0.0, 0.006);
  EXPECT_NEAR(sum2 / n, 1.0, 0.01);
}

TEST(Synth_Random, poisson_inversion_mean_and_variance) {
  const rng::Stream s(5, rng::Purpose::Poisson);
  for (double lambda : {0.3, 3.0, 11.5}) {
    double sum = 0, sum2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; ++i) {
      const double k = static_cast<double>(poisson_inversion(lambda, s.open_uniform(i)));
      sum += k;
      sum2 += k * k;
    }
    const double mean = sum / n, var = sum2 / n - mean * mean;
    EXPECT_NEAR(mean, lambda, 0.02 * lambda + 0.01) << lambda;
    EXPECT_NEAR(var, lambda, 0.04 * lambda + 0.01) << lambda;
  }
}

// ---- reproducibility

TEST(Synth_Generate, same_seed_same_pixels_for_any_thread_count) {
  SynthParams p = small_2d();
  p.height = 300;  // several bands
  SynthResult r1, r2, r4;
  tbb::task_arena(1).execute([&] { r1 = generate(p); });
  tbb::task_arena(2).execute([&] { r2 = generate(p); });
  tbb::task_arena(4).execute([&] { r4 = generate(p); });
  EXPECT_TRUE(r1.image.same_pixels(r2.image));
  EXPECT_TRUE(r1.image.same_pixels(r4.image));
  EXPECT_TRUE(r1.labels.same_pixels(r2.labels));
  EXPECT_TRUE(r1.labels.same_pixels(r4.labels));
  EXPECT_GT(r1.cells_placed, 50);
}

TEST(Synth_Generate, pixels_do_not_depend_on_band_height) {
  for (const SynthParams& p : {small_2d(11), small_3d(12)}) {
    const Generator g(p);
    const SynthResult whole = g.render(p.height);
    for (int64_t rows : {1, 5, 17, 40}) {
      const SynthResult banded = g.render(rows);
      EXPECT_TRUE(whole.image.same_pixels(banded.image)) << rows;
      EXPECT_TRUE(whole.labels.same_pixels(banded.labels)) << rows;
    }
    // Streaming bands equal the same rows of the whole image.
    const Band band = g.render_band(13, 41);
    const Box box{0, 13, 0, p.depth, 28, p.width};
    EXPECT_TRUE(band.image.same_pixels(whole.image.region(box)));
    EXPECT_TRUE(band.labels.same_pixels(whole.labels.region(box)));
  }
}

uint64_t fnv1a(const Image& im) {
  const Image c = im.contiguous();
  const auto* p = static_cast<const unsigned char*>(c.data());
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < c.byte_size(); ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

// Machine independence: these FNV-1a hashes of the pixels were obtained, identical, on the
// development machine (Debian 12, g++ 12.2 -O3 and clang -O2 -march=native, glibc 2.36) and on
// the GPU machine (Intel Xeon, Ubuntu 24.04, g++ 13.3 -O3, glibc 2.39), on 1 and 4 threads.
// A deliberate change of the image model changes them: record the new values from this test's
// failure message, and say so in the commit.
TEST(Synth_Generate, golden_hashes_are_machine_independent) {
  struct Case {
    const char* name;
    SynthParams p;
    uint64_t image, labels;
    int64_t cells;
  };
  std::vector<Case> cases;
  cases.push_back(
      {"2d_u16_default", SynthParams{}, 0xbb783dd7bc6ce916ull, 0xe9bd7c7b6ef8422dull, 445});
  SynthParams b;
  b.depth = 32;
  b.height = 128;
  b.width = 128;
  b.dtype = DType::U8;
  b.spacing_xy = 0.25;
  b.spacing_z = 0.75;
  b.diameter = 18;
  b.seed = 9;
  cases.push_back({"3d_u8_aniso", b, 0x37d3b83d160ce225ull, 0x9c0dea59a4753984ull, 87});
  SynthParams c;
  c.height = 300;
  c.width = 256;
  c.channels = 3;
  c.dtype = DType::U8;
  c.diameter = 30;
  c.density = 0.35;
  c.seed = 4;
  cases.push_back({"2d_rgb_u8", c, 0xaafa7c7710084d90ull, 0x90bd907edf95534full, 36});
  SynthParams d;
  d.height = 200;
  d.width = 333;
  d.dtype = DType::F32;
  d.irregularity = 0.4;
  d.touching = 0.8;
  d.photons = 5;
  d.illumination = 0.6;
  d.blur = 2.2;
  d.seed = 77;
  cases.push_back({"2d_f32_poisson", d, 0x730dee89fb40e7a4ull, 0x1140f81a622ef289ull, 113});
  for (const Case& k : cases) {
    const SynthResult r = generate(k.p);
    EXPECT_EQ(r.cells_placed, k.cells) << k.name;
    EXPECT_EQ(fnv1a(r.image), k.image) << k.name << std::hex << " image hash 0x" << fnv1a(r.image);
    EXPECT_EQ(fnv1a(r.labels), k.labels)
        << k.name << std::hex << " labels hash 0x" << fnv1a(r.labels);
  }
}

TEST(Synth_Generate, different_seeds_differ) {
  const SynthResult a = generate(small_2d(1));
  const SynthResult b = generate(small_2d(2));
  EXPECT_FALSE(a.image.same_pixels(b.image));
  EXPECT_FALSE(a.labels.same_pixels(b.labels));
  const auto la = label_vector(a.labels), lb = label_vector(b.labels);
  size_t differ = 0;
  for (size_t i = 0; i < la.size(); ++i) differ += (la[i] != 0) != (lb[i] != 0);
  EXPECT_GT(differ, la.size() / 10);  // the foregrounds are unrelated, not shifted copies
}

// ---- labels against the plain reference

TEST(Synth_Labels, match_brute_force_reference_2d_and_3d) {
  for (const SynthParams& p : {small_2d(21), small_2d(22), small_3d(23)}) {
    SynthParams q = p;
    q.irregularity = 0.3;  // rough boundaries make more disconnected fragments to remove
    q.overlap = 0.4;
    const Generator g(q);
    const SynthResult r = g.render(9);
    std::vector<uint32_t> ref;
    std::vector<float> dist;
    reference_labels(g.scene(), ref, dist);
    const auto got = label_vector(r.labels);
    ASSERT_EQ(got.size(), ref.size());
    size_t mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) mismatches += got[i] != ref[i];
    EXPECT_EQ(mismatches, 0u) << "seed " << q.seed;
  }
}

TEST(Synth_Labels, random_parameters_match_reference_and_invariants) {
  // Random parameter sets, including degenerate sizes (one row, one column, cells larger than
  // the image), each against the brute-force reference and the label invariants.
  const rng::Stream s(2024, rng::Purpose::CellShape, 99);
  uint64_t k = 0;
  auto uni = [&](double lo, double hi) { return lo + (hi - lo) * s.uniform(k++); };
  int64_t total_cells = 0, total_clustered = 0;
  for (int trial = 0; trial < 40; ++trial) {
    SynthParams p;
    p.seed = 1000 + static_cast<uint64_t>(trial);
    p.depth = trial % 3 == 0 ? static_cast<int64_t>(uni(2, 9)) : 1;
    p.height = static_cast<int64_t>(uni(1, 70));
    p.width = static_cast<int64_t>(uni(1, 70));
    p.diameter = uni(1.5, 40);
    p.diameter_spread = uni(0, 0.6);
    p.elongation = uni(1, 3);
    p.irregularity = uni(0, 0.44);
    p.touching = uni(0, 1);
    p.overlap = uni(0.05, 0.6);
    p.max_cluster = static_cast<int>(uni(2, 7));
    p.gap = uni(0, 4);
    p.density = uni(0, 0.6);
    if (trial % 4 == 1) p.cells = static_cast<int64_t>(uni(1, 30));
    p.spacing_z = p.spacing_xy * uni(0.5, 4);
    p.blur = uni(0, 2);
    p.channels = trial % 5 == 2 ? 3 : 1;
    const Generator g(p);
    const SynthResult whole = g.render(p.height);
    const SynthResult banded = g.render(1 + trial % 7);
    EXPECT_TRUE(whole.image.same_pixels(banded.image)) << "trial " << trial;
    EXPECT_TRUE(whole.labels.same_pixels(banded.labels)) << "trial " << trial;
    std::vector<uint32_t> ref;
    std::vector<float> dist;
    reference_labels(g.scene(), ref, dist);
    const auto got = label_vector(whole.labels);
    size_t mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) mismatches += got[i] != ref[i];
    EXPECT_EQ(mismatches, 0u) << "trial " << trial;
    const auto comps = components_per_label(got, Dims{p.depth, p.height, p.width});
    EXPECT_EQ(static_cast<int64_t>(comps.size()), whole.cells_placed) << "trial " << trial;
    uint32_t expected = 1;
    for (const auto& [label, n] : comps) {
      EXPECT_EQ(label, expected++) << "trial " << trial;
      EXPECT_EQ(n, 1) << "trial " << trial << " label " << label;
    }
    EXPECT_LE(whole.cells_placed, whole.cells_requested);
    EXPECT_LE(whole.cells_clustered, whole.cells_placed);
    total_cells += whole.cells_placed;
    total_clustered += whole.cells_clustered;
  }
  EXPECT_GT(total_cells, 150);  // the trials are not vacuous
  EXPECT_GT(total_clustered, 40);
  std::printf("random trials: %lld cells, %lld in clusters\n", static_cast<long long>(total_cells),
              static_cast<long long>(total_clustered));
}

TEST(Synth_Labels, consecutive_single_component_and_dtype) {
  for (const SynthParams& p : {small_2d(31), small_3d(32)}) {
    SynthParams q = p;
    q.irregularity = 0.35;
    const SynthResult r = generate(q);
    EXPECT_EQ(r.labels.dtype(), DType::U16);
    EXPECT_EQ(r.labels.shape(), (Shape{1, q.depth, q.height, q.width}));
    const auto lab = label_vector(r.labels);
    const Dims d{q.depth, q.height, q.width};
    const auto comps = components_per_label(lab, d);
    ASSERT_EQ(static_cast<int64_t>(comps.size()), r.cells_placed);
    // Consecutive 1..N, each exactly one face-connected component.
    uint32_t expected = 1;
    for (const auto& [label, n] : comps) {
      EXPECT_EQ(label, expected++);
      EXPECT_EQ(n, 1) << "label " << label;
    }
    EXPECT_GT(r.cells_placed, 10);
  }
}

TEST(Synth_Labels, u32_above_65535_cells) {
  SynthParams p;
  p.height = 2500;
  p.width = 2500;
  p.diameter = 3.0;
  p.diameter_spread = 0.1;
  p.cells = 70000;
  p.touching = 0.5;
  p.blur = 0;
  const SynthResult r = generate(p);
  ASSERT_EQ(r.cells_placed, 70000);
  EXPECT_EQ(r.labels.dtype(), DType::U32);
  const auto lab = label_vector(r.labels);
  std::vector<uint8_t> present(70001, 0);
  for (uint32_t l : lab) {
    ASSERT_LE(l, 70000u);
    present[l] = 1;
  }
  EXPECT_EQ(std::accumulate(present.begin() + 1, present.end(), 0), 70000);
}

TEST(Synth_Labels, sizes_within_requested_spread) {
  SynthParams p;
  p.height = 512;
  p.width = 512;
  p.seed = 41;
  p.diameter = 20;
  p.diameter_spread = 0.25;
  p.touching = 0.0;
  p.density = 0.2;
  const SynthResult r = generate(p);
  const auto lab = label_vector(r.labels);
  std::vector<int64_t> area(static_cast<size_t>(r.cells_placed) + 1, 0);
  std::vector<uint8_t> border(area.size(), 0);
  for (int64_t y = 0; y < p.height; ++y)
    for (int64_t x = 0; x < p.width; ++x) {
      const uint32_t l = lab[static_cast<size_t>(y * p.width + x)];
      ++area[l];
      if (y == 0 || x == 0 || y == p.height - 1 || x == p.width - 1) border[l] = 1;
    }
  const DiameterRange range = diameter_range(p);
  double sum = 0;
  int n = 0;
  for (size_t l = 1; l < area.size(); ++l) {
    if (border[l]) continue;
    const double d = 2.0 * std::sqrt(static_cast<double>(area[l]) / rng::kPi);
    // The boundary perturbation changes the radius by at most `irregularity`; pixelisation by
    // about a pixel.
    EXPECT_GE(d, range.min * (1 - p.irregularity) - 1.5) << l;
    EXPECT_LE(d, range.max * (1 + p.irregularity) + 1.5) << l;
    sum += d;
    ++n;
  }
  ASSERT_GT(n, 50);
  EXPECT_NEAR(sum / n, p.diameter, 0.1 * p.diameter);
}

TEST(Synth_Labels, touching_fraction_as_requested) {
  for (double touching : {0.0, 0.3, 0.7, 1.0}) {
    SynthParams p;
    p.height = 512;
    p.width = 512;
    p.seed = 51;
    p.diameter = 10;
    p.density = 0.2;
    p.touching = touching;
    const SynthResult r = generate(p);
    const auto lab = label_vector(r.labels);
    const auto touch = touching_labels(lab, Dims{1, p.height, p.width});
    const double fraction = static_cast<double>(touch.size()) / static_cast<double>(r.cells_placed);
    EXPECT_NEAR(fraction, touching, 0.05) << "requested " << touching;
    // Cells outside clusters never touch; cluster members do.
    EXPECT_EQ(static_cast<int64_t>(touch.size()), r.cells_clustered) << touching;
    EXPECT_GT(r.cells_placed, 400);
  }
}

TEST(Synth_Labels, density_and_count) {
  SynthParams p;
  p.height = 400;
  p.width = 400;
  p.diameter = 12;
  p.density = 0.25;
  p.touching = 0.3;
  const SynthResult r = generate(p);
  EXPECT_EQ(r.cells_requested, cells_for_density(p));
  EXPECT_EQ(r.cells_placed, r.cells_requested);
  const auto lab = label_vector(r.labels);
  const double covered =
      static_cast<double>(std::count_if(lab.begin(), lab.end(), [](uint32_t l) { return l; })) /
      static_cast<double>(lab.size());
  EXPECT_NEAR(covered, p.density, 0.05);

  p.cells = 123;
  EXPECT_EQ(generate(p).cells_placed, 123);
}

TEST(Synth_Labels, overfull_request_places_fewer_and_says_so) {
  SynthParams p;
  p.height = 64;
  p.width = 64;
  p.diameter = 16;
  p.cells = 200;  // far more than fit
  p.touching = 0.0;
  const SynthResult r = generate(p);
  EXPECT_EQ(r.cells_requested, 200);
  EXPECT_LT(r.cells_placed, 40);
  EXPECT_GT(r.cells_placed, 3);
  const auto comps = components_per_label(label_vector(r.labels), Dims{1, 64, 64});
  EXPECT_EQ(static_cast<int64_t>(comps.size()), r.cells_placed);
}

// ---- intensities

TEST(Synth_Intensity, matches_voxelwise_model_and_direct_blur) {
  for (SynthParams p : {small_2d(61), small_3d(62)}) {
    p.dtype = DType::F32;
    p.photons = 0;
    p.noise = 0;
    p.offset = 0.01;
    p.blur = 1.3;
    p.blur_z = 0.8;
    p.illumination = 0.4;
    for (int channels : {1, 3}) {
      p.channels = channels;
      const Generator g(p);
      const SynthResult r = g.render(7);
      std::vector<uint32_t> lab;
      std::vector<float> dist;
      reference_labels(g.scene(), lab, dist);
      const Shading shading(p, g.scene());
      const Dims d{p.depth, p.height, p.width};
      const auto kx = gaussian_kernel(p.blur);
      const auto kz = p.depth > 1 ? gaussian_kernel(p.blur_z) : std::vector<float>{1.0f};
      const int64_t rx = static_cast<int64_t>(kx.size() / 2),
                    rz = static_cast<int64_t>(kz.size() / 2);
      for (int64_t c = 0; c < channels; ++c) {
        std::vector<double> sig(lab.size());
        for (int64_t z = 0; z < d.z; ++z)
          for (int64_t y = 0; y < d.y; ++y)
            for (int64_t x = 0; x < d.x; ++x) {
              double v[3];
              const size_t i = d.at(z, y, x);
              shading.signal(z, y, x, lab[i], dist[i], shading.illumination(z, y, x), v);
              sig[i] = v[c];
            }
        const auto got = image_channel(r.image, c);
        double worst = 0;
        for (int64_t z = 0; z < d.z; ++z)
          for (int64_t y = 0; y < d.y; ++y)
            for (int64_t x = 0; x < d.x; ++x) {
              double acc = 0;  // direct triple sum over the 3D kernel
              for (int64_t a = -rz; a <= rz; ++a)
                for (int64_t b = -rx; b <= rx; ++b)
                  for (int64_t e = -rx; e <= rx; ++e)
                    acc += double(kz[size_t(a + rz)]) * kx[size_t(b + rx)] * kx[size_t(e + rx)] *
                           sig[d.at(reflect_index(z + a, d.z), reflect_index(y + b, d.y),
                                    reflect_index(x + e, d.x))];
              worst = std::max(worst, std::abs(got[d.at(z, y, x)] - (acc + p.offset)));
            }
        EXPECT_LT(worst, 2e-6) << "depth " << p.depth << " channel " << c;
      }
    }
  }
}

TEST(Synth_Intensity, foreground_brighter_by_the_requested_contrast) {
  SynthParams p;
  p.height = 512;
  p.width = 512;
  p.seed = 71;
  p.diameter = 16;
  p.illumination = 0.0;
  p.blur = 0.0;
  p.background = 0.1;
  p.contrast = 0.3;
  p.photons = 300;
  p.noise = 0.01;
  const SynthResult r = generate(p);
  const auto lab = label_vector(r.labels);
  const auto img = image_channel(r.image, 0);
  double fg = 0, bg = 0;
  int64_t nf = 0, nb = 0;
  for (size_t i = 0; i < lab.size(); ++i) {
    if (lab[i]) {
      fg += img[i];
      ++nf;
    } else {
      bg += img[i];
      ++nb;
    }
  }
  fg /= nf;
  bg /= nb;
  const double full = effective_full_scale(p);
  EXPECT_EQ(full, 4095.0);
  EXPECT_NEAR(bg, p.background * full, 0.01 * full);
  // Per-cell brightness has mean 1; the cells are few hundred, so the mean is within ~5%.
  EXPECT_NEAR(fg - bg, p.contrast * full, 0.1 * p.contrast * full);
}

TEST(Synth_Intensity, noise_statistics_on_background) {
  for (double photons : {0.0, 50.0, 1000.0}) {
    SynthParams p;
    p.height = 256;
    p.width = 256;
    p.density = 0.0;  // no cells
    p.illumination = 0.0;
    p.blur = 0.0;
    p.background = 0.1;
    p.noise = 0.02;
    p.photons = photons;
    p.dtype = DType::F32;
    const SynthResult r = generate(p);
    ASSERT_EQ(r.cells_placed, 0);
    const auto img = image_channel(r.image, 0);
    double sum = 0, sum2 = 0;
    for (double v : img) {
      sum += v;
      sum2 += v * v;
    }
    const double n = static_cast<double>(img.size());
    const double mean = sum / n, var = sum2 / n - mean * mean;
    const double expected_var = p.noise * p.noise + (photons > 0 ? p.background / photons : 0.0);
    EXPECT_NEAR(mean, p.background, 0.001) << photons;
    EXPECT_NEAR(var, expected_var, 0.05 * expected_var) << photons;
  }
}

TEST(Synth_Intensity, dtypes_scale_and_clamp) {
  SynthParams p = small_2d(81);
  p.dtype = DType::U8;
  const SynthResult a = generate(p);
  EXPECT_EQ(a.image.dtype(), DType::U8);
  p.dtype = DType::F32;
  p.full_scale = 255;
  const SynthResult b = generate(p);
  // Same scene and noise: u8 is the f32 image rounded and clamped to 0..255.
  const auto va = image_channel(a.image, 0), vb = image_channel(b.image, 0);
  for (size_t i = 0; i < va.size(); ++i)
    ASSERT_EQ(va[i], std::floor(std::clamp(vb[i], 0.0, 255.0) + 0.5)) << i;
  EXPECT_TRUE(a.labels.same_pixels(b.labels));
}

TEST(Synth_Intensity, rgb_has_nucleus_channel_and_same_labels) {
  SynthParams p = small_2d(91);
  p.diameter = 24;
  p.density = 0.25;
  p.photons = 0;
  p.noise = 0;
  p.blur = 0;
  p.illumination = 0;
  p.texture = 0;
  p.intensity_spread = 0;
  p.edge_falloff = 0;
  const SynthResult grey = generate(p);
  p.channels = 3;
  p.dtype = DType::U8;
  const SynthResult rgb = generate(p);
  EXPECT_EQ(rgb.image.shape(), (Shape{3, 1, p.height, p.width}));
  EXPECT_TRUE(grey.labels.same_pixels(rgb.labels));
  // Inside each cell the nucleus channel is bright where the cytoplasm channel is dimmed.
  const auto lab = label_vector(rgb.labels);
  const auto red = image_channel(rgb.image, 0), blue = image_channel(rgb.image, 2);
  const double bg = p.background * 255, hi = (p.background + p.contrast) * 255;
  int64_t nucleus = 0, cytoplasm = 0;
  for (size_t i = 0; i < lab.size(); ++i) {
    if (!lab[i]) {
      EXPECT_NEAR(blue[i], bg, 0.51);
      continue;
    }
    if (blue[i] > bg + 1) {
      ++nucleus;
      EXPECT_NEAR(blue[i], hi, 0.51);
      EXPECT_NEAR(red[i], (p.background + 0.4 * p.contrast) * 255, 0.51);
    } else {
      ++cytoplasm;
      EXPECT_NEAR(red[i], hi, 0.51);
    }
  }
  EXPECT_GT(nucleus, 500);
  EXPECT_GT(cytoplasm, nucleus);  // nucleus_ratio 0.5: about a quarter of the area
}

// ---- 3D

TEST(Synth_Volume, anisotropic_spacing_recorded_and_cells_flattened_in_voxels) {
  SynthParams p;
  p.depth = 40;
  p.height = 96;
  p.width = 96;
  p.seed = 101;
  p.diameter = 14;
  p.spacing_xy = 0.25;
  p.spacing_z = 0.75;  // aspect 3: a cell spans a third as many slices as columns
  p.elongation = 1.0;
  p.irregularity = 0.0;
  p.touching = 0.0;
  const SynthResult r = generate(p);
  EXPECT_EQ(r.image.shape(), (Shape{1, 40, 96, 96}));
  EXPECT_DOUBLE_EQ(r.image.geometry().spacing[0], 0.75);
  EXPECT_DOUBLE_EQ(r.image.geometry().spacing[1], 0.25);
  EXPECT_DOUBLE_EQ(r.image.geometry().spacing[2], 0.25);
  EXPECT_EQ(r.image.geometry().unit, "um");
  EXPECT_EQ(r.labels.geometry().spacing, r.image.geometry().spacing);
  EXPECT_DOUBLE_EQ(effective_blur_z(p), 2.5 * p.blur * 0.25 / 0.75);
  // Spheres in µm: the variance of voxel z is 1/9 that of voxel x, per cell.
  const auto lab = label_vector(r.labels);
  const Dims d{p.depth, p.height, p.width};
  std::vector<double> n(size_t(r.cells_placed) + 1), sz(n.size()), szz(n.size()), sx(n.size()),
      sxx(n.size());
  std::vector<uint8_t> border(n.size());
  for (int64_t z = 0; z < d.z; ++z)
    for (int64_t y = 0; y < d.y; ++y)
      for (int64_t x = 0; x < d.x; ++x) {
        const uint32_t l = lab[d.at(z, y, x)];
        if (!l) continue;
        n[l] += 1;
        sz[l] += z;
        szz[l] += double(z) * z;
        sx[l] += x;
        sxx[l] += double(x) * x;
        if (z == 0 || z == d.z - 1 || y == 0 || y == d.y - 1 || x == 0 || x == d.x - 1)
          border[l] = 1;
      }
  double ratio = 0;
  int cells = 0;
  for (size_t l = 1; l < n.size(); ++l) {
    if (border[l] || n[l] < 50) continue;
    const double vz = szz[l] / n[l] - std::pow(sz[l] / n[l], 2);
    const double vx = sxx[l] / n[l] - std::pow(sx[l] / n[l], 2);
    ratio += std::sqrt(vx / vz);
    ++cells;
  }
  ASSERT_GT(cells, 5);
  EXPECT_NEAR(ratio / cells, 3.0, 0.35);
}

// ---- parameters

TEST(Synth_Params, invalid_values_name_the_parameter) {
  auto message = [](SynthParams p) {
    try {
      validate(p);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  SynthParams p;
  p.width = 0;
  EXPECT_NE(message(p).find("size"), std::string::npos);
  p = {};
  p.channels = 2;
  EXPECT_NE(message(p).find("channels"), std::string::npos);
  p = {};
  p.dtype = DType::I16;
  EXPECT_NE(message(p).find("dtype"), std::string::npos);
  p = {};
  p.irregularity = 0.7;
  EXPECT_NE(message(p).find("irregularity = 0.7"), std::string::npos);
  p = {};
  p.touching = 1.5;
  EXPECT_NE(message(p).find("touching"), std::string::npos);
  p = {};
  p.density = std::nan("");
  EXPECT_NE(message(p).find("density"), std::string::npos);
  EXPECT_THROW(generate(p), Error);
  EXPECT_EQ(message(SynthParams{}), "no error");
  const Generator g(small_2d());
  EXPECT_THROW(g.render_band(10, 10), Error);
  EXPECT_THROW(g.render_band(0, 97), Error);
}

}  // namespace
}  // namespace umamba::synth
