// Counter-based random numbers and machine-independent elementary functions for the generator.
//
// What: every random value the generator uses is a pure function of (seed, purpose, counter),
// where the counter is a cell index, a pixel index or a lattice index. No generator state is
// shared or consumed in sequence, so the result does not depend on how work is split over
// threads or bands.
//
// Method: the counter is mixed with a per-stream key by two rounds of the SplitMix64 finaliser
// (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014); one round
// is SplitMix64's own output function, the second decorrelates streams whose keys differ by a
// multiple of the increment. Normal deviates come from one uniform through Acklam's rational
// approximation of the inverse normal CDF (relative error below 1.15e-9).
//
// The elementary functions (exp, log, sin, cos) are written here with range reduction and
// polynomials in IEEE double arithmetic only (+ - * / sqrt, frexp/ldexp), so that a seed gives the
// same pixels on every machine and libm version; the standard library's versions may differ in the
// last bit between implementations. Accuracy is about 1e-15 relative on the ranges used here.
// Limits: not a cryptographic generator; arguments of sin/cos beyond |x| ~ 1e6 lose accuracy.
#pragma once

#include <cmath>
#include <cstdint>

namespace umamba::synth::rng {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

constexpr uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Purposes: one independent stream per use, so that adding a use never shifts another's values.
enum class Purpose : uint64_t {
  CellShape = 1,
  CellPlace = 2,
  Cluster = 3,
  Texture = 4,
  Illumination = 5,
  Noise = 6,
  Poisson = 7,
  ImageSeed = 8,
};

// A keyed stream: bits(counter) is a 64-bit value, uniform(counter) one in [0, 1).
class Stream {
 public:
  constexpr Stream(uint64_t seed, Purpose purpose, uint64_t sub = 0)
      : key_(mix64(mix64(seed ^ (static_cast<uint64_t>(purpose) * kGolden)) + sub * kGolden +
                   0x632BE59BD9B4E019ull)),
        key2_(mix64(key_ ^ 0xD1B54A32D192ED03ull)) {}

  constexpr uint64_t bits(uint64_t counter) const {
    return mix64(mix64(counter * kGolden + key_) ^ key2_);
  }
  // [0, 1), 53 random bits.
  double uniform(uint64_t counter) const {
    return static_cast<double>(bits(counter) >> 11) * 0x1.0p-53;
  }
  // (0, 1): never 0 or 1, safe for log and the inverse normal CDF.
  double open_uniform(uint64_t counter) const {
    return (static_cast<double>(bits(counter) >> 11) + 0.5) * 0x1.0p-53;
  }
  // [-1, 1).
  double symmetric(uint64_t counter) const { return 2.0 * uniform(counter) - 1.0; }

 private:
  uint64_t key_;
  uint64_t key2_;
};

// ---- machine-independent elementary functions (double precision)

namespace detail {
constexpr double kLn2Hi = 6.93147180369123816490e-01;  // ln 2 split for exact range reduction
constexpr double kLn2Lo = 1.90821492927058770002e-10;
constexpr double kPiOver2Hi = 1.57079632673412561417e+00;
constexpr double kPiOver2Lo = 6.07710050650619224932e-11;

// 1/n! for n = 0..20, evaluated by the compiler (IEEE division, the same on every machine).
struct InvFactorials {
  double v[21]{};
  constexpr InvFactorials() {
    double f = 1.0;
    for (int n = 0; n <= 20; ++n) {
      if (n > 0) f *= n;
      v[n] = 1.0 / f;
    }
  }
  constexpr double operator[](int n) const { return v[n]; }
};
inline constexpr InvFactorials kInvFact{};
}  // namespace detail

constexpr double kPi = 3.14159265358979323846;

// Nearest integer, halves away from zero (plain arithmetic: no libm call, same everywhere).
inline double round_nearest(double x) {
  return static_cast<double>(static_cast<int64_t>(x >= 0.0 ? x + 0.5 : x - 0.5));
}

// e^x; returns 0 below -745 and +inf above 709.
inline double exp(double x) {
  if (x < -745.0) return 0.0;
  if (x > 709.0) return HUGE_VAL;
  const double k = round_nearest(x * 1.44269504088896340736);      // x / ln 2
  const double r = (x - k * detail::kLn2Hi) - k * detail::kLn2Lo;  // |r| <= 0.347
  // Taylor series to r^14 / 14! in Horner form: truncation error < 1e-17 on |r| <= 0.35.
  double sum = detail::kInvFact[14];
  for (int n = 13; n >= 0; --n) sum = sum * r + detail::kInvFact[n];
  return std::ldexp(sum, static_cast<int>(k));
}

// Natural logarithm of x > 0 (returns -inf for 0 and NaN below).
inline double log(double x) {
  if (!(x > 0.0)) return x == 0.0 ? -HUGE_VAL : NAN;
  int e = 0;
  double m = std::frexp(x, &e);  // x = m 2^e, m in [0.5, 1)
  if (m < 0.70710678118654752440) {
    m *= 2.0;
    --e;
  }
  // log m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716: odd series to s^27.
  const double s = (m - 1.0) / (m + 1.0);
  const double s2 = s * s;
  double sum = 1.0 / 27.0;
  for (int n = 25; n >= 1; n -= 2) sum = sum * s2 + 1.0 / n;
  sum *= s;
  return 2.0 * sum + e * detail::kLn2Hi + e * detail::kLn2Lo;
}

namespace detail {
// sin and cos of |r| <= pi/4 by their Taylor series in Horner form (truncation error below
// 0.79^17/17! = 1e-16 and 0.79^18/18! = 8e-18).
inline double sin_poly(double r) {
  const double r2 = r * r;
  // r - r^3/3! + r^5/5! - ... + r^17/17!
  double sum = kInvFact[17];
  for (int n = 15; n >= 1; n -= 2) sum = sum * r2 + ((n / 2) % 2 ? -kInvFact[n] : kInvFact[n]);
  return sum * r;
}
inline double cos_poly(double r) {
  const double r2 = r * r;
  // 1 - r^2/2! + r^4/4! - ... - r^18/18!
  double sum = -kInvFact[18];
  for (int n = 16; n >= 0; n -= 2) sum = sum * r2 + ((n / 2) % 2 ? -kInvFact[n] : kInvFact[n]);
  return sum;
}
}  // namespace detail

inline double sin(double x) {
  const double k = round_nearest(x * 0.63661977236758134308);  // x / (pi/2)
  const double r = (x - k * detail::kPiOver2Hi) - k * detail::kPiOver2Lo;
  switch (static_cast<int64_t>(k) & 3) {
    case 0:
      return detail::sin_poly(r);
    case 1:
      return detail::cos_poly(r);
    case 2:
      return -detail::sin_poly(r);
    default:
      return -detail::cos_poly(r);
  }
}

inline double cos(double x) {
  const double k = round_nearest(x * 0.63661977236758134308);
  const double r = (x - k * detail::kPiOver2Hi) - k * detail::kPiOver2Lo;
  switch (static_cast<int64_t>(k) & 3) {
    case 0:
      return detail::cos_poly(r);
    case 1:
      return -detail::sin_poly(r);
    case 2:
      return -detail::cos_poly(r);
    default:
      return detail::sin_poly(r);
  }
}

// Inverse of the standard normal CDF at p in (0, 1) (Acklam's algorithm, relative error
// < 1.15e-9). A uniform from open_uniform() gives a standard normal deviate.
inline double normal_quantile(double p) {
  constexpr double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                           1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  constexpr double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                           6.680131188771972e+01, -1.328068155288572e+01};
  constexpr double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                           -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  constexpr double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                           3.754408661907416e+00};
  constexpr double p_low = 0.02425;
  if (p < p_low) {
    const double q = std::sqrt(-2.0 * rng::log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  }
  if (p > 1.0 - p_low) {
    const double q = std::sqrt(-2.0 * rng::log(1.0 - p));
    return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  }
  const double q = p - 0.5;
  const double r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
}

// A standard normal deviate for `counter` of `stream`.
inline double normal(const Stream& stream, uint64_t counter) {
  return normal_quantile(stream.open_uniform(counter));
}

// The same quantile, faster, for per-pixel noise: linear interpolation in a table of 4096
// intervals of normal_quantile for 1/64 <= u < 63/64 (error < 2e-5), normal_quantile itself in
// the tails (3% of draws). The table is computed from normal_quantile, so it is the same on
// every machine.
class FastNormal {
 public:
  static constexpr int kBits = 12;
  static constexpr int kSize = 1 << kBits;
  static constexpr int kTail = kSize / 64;

  FastNormal() {
    for (int i = kTail; i <= kSize - kTail; ++i)
      table_[i] = normal_quantile(static_cast<double>(i) / kSize);
  }
  double operator()(const Stream& stream, uint64_t counter) const {
    const uint64_t bits = stream.bits(counter);
    const int i = static_cast<int>(bits >> (64 - kBits));
    if (i < kTail || i >= kSize - kTail)
      return normal_quantile((static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53);
    // Position inside the interval from the next 40 bits.
    const double t =
        static_cast<double>((bits >> (64 - kBits - 40)) & ((uint64_t{1} << 40) - 1)) * 0x1.0p-40;
    return table_[i] + (table_[i + 1] - table_[i]) * t;
  }
  // One shared instance (built on first use).
  static const FastNormal& instance() {
    static const FastNormal table;
    return table;
  }

 private:
  double table_[kSize + 1]{};
};

}  // namespace umamba::synth::rng
