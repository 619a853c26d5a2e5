// Intensity normalisation after nnU-Net v2 (see normalization.h for the schemes and limits).
#include "engine/normalization.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include <tbb/parallel_for.h>

#include "core/error.h"

namespace umamba::engine {

NormScheme norm_scheme_from_name(const std::string& name) {
  std::string n;
  for (char ch : name) n += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (n == "zscorenormalization" || n == "zscore") return NormScheme::ZScore;
  if (n == "ctnormalization" || n == "ct") return NormScheme::CT;
  if (n == "nonormalization" || n == "none" || n == "nonorm") return NormScheme::NoNorm;
  if (n == "rescaleto01normalization" || n == "rescale") return NormScheme::RescaleTo01;
  if (n == "rgbto0_1normalization" || n == "rgb") return NormScheme::RgbTo01;
  fail(
      "normalisation: unknown scheme '{}' (expected ZScoreNormalization, CTNormalization, "
      "NoNormalization, RescaleTo01Normalization or RGBTo0_1Normalization)",
      name);
}

std::string norm_scheme_name(NormScheme scheme) {
  switch (scheme) {
    case NormScheme::ZScore:
      return "ZScoreNormalization";
    case NormScheme::CT:
      return "CTNormalization";
    case NormScheme::NoNorm:
      return "NoNormalization";
    case NormScheme::RescaleTo01:
      return "RescaleTo01Normalization";
    case NormScheme::RgbTo01:
      return "RGBTo0_1Normalization";
  }
  return "?";
}

const ChannelNormalization& Normalization::channel(int64_t c) const {
  UMAMBA_CHECK(!channels.empty(), "normalisation: no channel settings");
  if (channels.size() == 1) return channels[0];
  UMAMBA_CHECK(c >= 0 && c < static_cast<int64_t>(channels.size()),
               "normalisation: channel {} has no settings ({} configured)", c, channels.size());
  return channels[static_cast<size_t>(c)];
}

Normalization Normalization::from_plans(const nlohmann::json& configuration,
                                        const nlohmann::json& intensity_properties) {
  UMAMBA_CHECK(configuration.contains("normalization_schemes") &&
                   configuration["normalization_schemes"].is_array(),
               "plans: configuration lacks the array 'normalization_schemes'");
  const auto& schemes = configuration["normalization_schemes"];
  Normalization n;
  n.channels.clear();
  for (size_t c = 0; c < schemes.size(); ++c) {
    ChannelNormalization ch;
    ch.scheme = norm_scheme_from_name(schemes[c].get<std::string>());
    if (configuration.contains("use_mask_for_norm")) {
      const auto& m = configuration["use_mask_for_norm"];
      UMAMBA_CHECK(m.is_array() && m.size() == schemes.size(),
                   "plans: 'use_mask_for_norm' needs {} entries", schemes.size());
      ch.use_mask_for_norm = m[c].get<bool>();
    }
    if (ch.scheme == NormScheme::CT) {
      const std::string key = std::to_string(c);
      UMAMBA_CHECK(intensity_properties.contains(key),
                   "plans: CT normalisation of channel {} needs "
                   "foreground_intensity_properties_per_channel['{}']",
                   c, key);
      const auto& p = intensity_properties[key];
      for (const char* k : {"mean", "std", "percentile_00_5", "percentile_99_5"}) {
        UMAMBA_CHECK(p.contains(k), "plans: intensity properties of channel {} lack '{}'", c, k);
      }
      ch.dataset.mean = p["mean"].get<double>();
      ch.dataset.std = p["std"].get<double>();
      ch.dataset.percentile_00_5 = p["percentile_00_5"].get<double>();
      ch.dataset.percentile_99_5 = p["percentile_99_5"].get<double>();
    }
    n.channels.push_back(ch);
  }
  UMAMBA_CHECK(!n.channels.empty(), "plans: 'normalization_schemes' is empty");
  return n;
}

StatsAccumulator::StatsAccumulator(int64_t channels, bool masked)
    : masked_(masked),
      mean_(static_cast<size_t>(channels), 0.0),
      m2_(static_cast<size_t>(channels), 0.0),
      min_(static_cast<size_t>(channels), std::numeric_limits<double>::infinity()),
      max_(static_cast<size_t>(channels), -std::numeric_limits<double>::infinity()),
      count_(static_cast<size_t>(channels), 0) {}

namespace {

// Count, mean, sum of squared deviations, min and max of some values.
struct Moments {
  int64_t n = 0;
  double mean = 0.0, m2 = 0.0;
  double lo = std::numeric_limits<double>::infinity(),
         hi = -std::numeric_limits<double>::infinity();

  // Chan, Golub and LeVeque's pairwise update.
  void merge(const Moments& b) {
    if (b.n == 0) return;
    const double na = static_cast<double>(n), nb = static_cast<double>(b.n);
    const double delta = b.mean - mean;
    mean += delta * nb / (na + nb);
    m2 += b.m2 + delta * delta * na * nb / (na + nb);
    n += b.n;
    lo = std::min(lo, b.lo);
    hi = std::max(hi, b.hi);
  }
};

}  // namespace

void StatsAccumulator::add(const Image& band) {
  const Shape& s = band.shape();
  const Shape& st = band.strides();
  UMAMBA_CHECK(s.c == static_cast<int64_t>(mean_.size()),
               "normalisation statistics: band has {} channels, expected {}", s.c, mean_.size());
  // Blocks of rows, each with two passes (mean, then squared deviations), merged in block order
  // with Chan et al.'s update: stable for large, bright images, and the same result for every
  // thread count (the blocks do not depend on it).
  const int64_t rows = s.z * s.y;
  const int64_t block_rows = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, s.x));
  const int64_t blocks = (rows + block_rows - 1) / block_rows;
  std::vector<Moments> parts(static_cast<size_t>(blocks * s.c));
  visit_dtype(band.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(band.data());
    tbb::parallel_for(int64_t{0}, blocks, [&](int64_t b) {
      const int64_t r0 = b * block_rows, r1 = std::min(rows, r0 + block_rows);
      auto for_each = [&](int64_t c, auto&& fn) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t z = r / s.y, y = r % s.y;
          for (int64_t x = 0; x < s.x; ++x) {
            const int64_t base = z * st.z + y * st.y + x * st.x;
            if (masked_) {
              bool any = false;
              for (int64_t k = 0; k < s.c && !any; ++k) any = p[base + k * st.c] != T{};
              if (!any) continue;
            }
            fn(static_cast<double>(p[base + c * st.c]));
          }
        }
      };
      for (int64_t c = 0; c < s.c; ++c) {
        Moments& m = parts[static_cast<size_t>(b * s.c + c)];
        double sum = 0.0;
        for_each(c, [&](double v) {
          ++m.n;
          sum += v;
          m.lo = std::min(m.lo, v);
          m.hi = std::max(m.hi, v);
        });
        if (m.n == 0) continue;
        m.mean = sum / static_cast<double>(m.n);
        for_each(c, [&](double v) { m.m2 += (v - m.mean) * (v - m.mean); });
      }
    });
  });
  for (int64_t c = 0; c < s.c; ++c) {
    const auto ci = static_cast<size_t>(c);
    Moments total{count_[ci], mean_[ci], m2_[ci], min_[ci], max_[ci]};
    for (int64_t b = 0; b < blocks; ++b) total.merge(parts[static_cast<size_t>(b * s.c + c)]);
    count_[ci] = total.n;
    mean_[ci] = total.mean;
    m2_[ci] = total.m2;
    min_[ci] = total.lo;
    max_[ci] = total.hi;
  }
}

std::vector<ChannelStats> StatsAccumulator::finish() const {
  std::vector<ChannelStats> out(mean_.size());
  for (size_t c = 0; c < mean_.size(); ++c) {
    ChannelStats& s = out[c];
    s.count = count_[c];
    if (s.count == 0) continue;  // an all-zero masked channel: mean 0, std 0
    s.mean = mean_[c];
    s.std = std::sqrt(m2_[c] / static_cast<double>(s.count));  // population std, as NumPy's
    s.min = min_[c];
    s.max = max_[c];
  }
  return out;
}

bool Normalizer::needs_image_stats(const Normalization& normalization, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) {
    const NormScheme s = normalization.channel(c).scheme;
    if (s == NormScheme::ZScore || s == NormScheme::RescaleTo01) return true;
  }
  return false;
}

bool Normalizer::needs_masked_stats(const Normalization& normalization, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) {
    const auto& ch = normalization.channel(c);
    if (ch.scheme == NormScheme::ZScore && ch.use_mask_for_norm) return true;
  }
  return false;
}

Normalizer::Normalizer(const Normalization& normalization, int64_t channels,
                       const std::vector<ChannelStats>& stats) {
  UMAMBA_CHECK(normalization.channels.size() == 1 ||
                   static_cast<int64_t>(normalization.channels.size()) == channels,
               "normalisation: {} channel settings for an image of {} channels",
               normalization.channels.size(), channels);
  if (needs_image_stats(normalization, channels)) {
    UMAMBA_CHECK(static_cast<int64_t>(stats.size()) == channels,
                 "normalisation: image statistics for {} channels, expected {}", stats.size(),
                 channels);
  }
  for (int64_t c = 0; c < channels; ++c) {
    const ChannelNormalization& ch = normalization.channel(c);
    ChannelTransform t;
    switch (ch.scheme) {
      case NormScheme::ZScore: {
        const ChannelStats& s = stats[static_cast<size_t>(c)];
        t.offset = s.mean;
        t.scale = std::max(s.std, 1e-8);
        t.masked = ch.use_mask_for_norm;
        break;
      }
      case NormScheme::CT:
        UMAMBA_CHECK(ch.dataset.percentile_00_5 <= ch.dataset.percentile_99_5,
                     "normalisation: CT percentiles of channel {} are reversed ({} > {})", c,
                     ch.dataset.percentile_00_5, ch.dataset.percentile_99_5);
        t.lo = ch.dataset.percentile_00_5;
        t.hi = ch.dataset.percentile_99_5;
        t.offset = ch.dataset.mean;
        t.scale = std::max(ch.dataset.std, 1e-8);
        break;
      case NormScheme::NoNorm:
        break;
      case NormScheme::RescaleTo01: {
        const ChannelStats& s = stats[static_cast<size_t>(c)];
        t.offset = s.min;
        t.scale = std::max(s.max - s.min, 1e-8);
        break;
      }
      case NormScheme::RgbTo01:
        t.scale = 255.0;
        t.check_rgb = true;
        break;
    }
    transforms_.push_back(t);
  }
}

void Normalizer::apply(const Image& src, float* dst, int64_t sc, int64_t sz, int64_t sy) const {
  const Shape& s = src.shape();
  const Shape& st = src.strides();
  UMAMBA_CHECK(s.c == static_cast<int64_t>(transforms_.size()),
               "normalisation: band has {} channels, expected {}", s.c, transforms_.size());
  bool any_masked = false;
  for (const auto& t : transforms_) any_masked = any_masked || t.masked;
  visit_dtype(src.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(src.data());
    for (int64_t z = 0; z < s.z; ++z) {
      for (int64_t y = 0; y < s.y; ++y) {
        for (int64_t c = 0; c < s.c; ++c) {
          const ChannelTransform& t = transforms_[static_cast<size_t>(c)];
          const T* in = p + c * st.c + z * st.z + y * st.y;
          float* out = dst + c * sc + z * sz + y * sy;
          for (int64_t x = 0; x < s.x; ++x) {
            const double v = static_cast<double>(in[x * st.x]);
            if (t.check_rgb && !(v >= 0.0 && v <= 255.0)) {
              fail("normalisation: RGBTo0_1 needs values in [0, 255], channel {} has {}", c, v);
            }
            if (any_masked && t.masked) {
              bool nonzero = false;
              const int64_t base = z * st.z + y * st.y + x * st.x;
              for (int64_t k = 0; k < s.c && !nonzero; ++k) nonzero = p[base + k * st.c] != T{};
              if (!nonzero) {
                out[x] = static_cast<float>(v);  // stays as it is (zero), as nnU-Net leaves it
                continue;
              }
            }
            out[x] = static_cast<float>((std::clamp(v, t.lo, t.hi) - t.offset) / t.scale);
          }
        }
      }
    }
  });
}

}  // namespace umamba::engine
