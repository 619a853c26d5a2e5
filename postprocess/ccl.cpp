// Run-based connected-component labelling, serial and TBB band-parallel (see ccl.h for the method,
// its source and its limits).
#include "postprocess/ccl.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <bit>
#include <vector>

#include "core/error.h"
#include "postprocess/equivalences.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace umamba::postprocess {

Connectivity connectivity_from_int(int value, bool is_3d) {
  switch (value) {
    case 0:
      return full_connectivity(is_3d);
    case 4:
    case 8:
      if (is_3d)
        fail("connectivity {} is for 2D images; a volume takes 6, 18 or 26 (or 0 for 26)", value);
      return value == 4 ? Connectivity::C4 : Connectivity::C8;
    case 6:
      return is_3d ? Connectivity::C6 : Connectivity::C4;
    case 18:
      return is_3d ? Connectivity::C18 : Connectivity::C8;
    case 26:
      return is_3d ? Connectivity::C26 : Connectivity::C8;
    default:
      fail(
          "connectivity must be 4 or 8 (2D), 6, 18 or 26 (3D), or 0 for the full neighbourhood; "
          "got {}",
          value);
  }
}

Connectivity full_connectivity(bool is_3d) {
  return is_3d ? Connectivity::C26 : Connectivity::C8;
}
Connectivity minimal_connectivity(bool is_3d) {
  return is_3d ? Connectivity::C6 : Connectivity::C4;
}
int to_int(Connectivity c) {
  return static_cast<int>(c);
}

namespace {

// A maximal run of foreground (or of one value) in one row: pixels [x0, x1).
struct Run {
  uint32_t x0;
  uint32_t x1;
  uint32_t label;
};

// A neighbour row of row (z, y) is (z + dz, y + dy); runs there touch a run [a0, a1) when they
// overlap [a0 - ext, a1 + ext) (ext = 1 adds the diagonal neighbours along X).
struct NeighbourRow {
  int dz;
  int dy;
  uint32_t ext;
};

// Only rows that come earlier in raster order: the forward half of each neighbourhood.
std::vector<NeighbourRow> neighbour_rows(Connectivity c) {
  switch (c) {
    case Connectivity::C4:
      return {{0, -1, 0}};
    case Connectivity::C8:
      return {{0, -1, 1}};
    case Connectivity::C6:
      return {{0, -1, 0}, {-1, 0, 0}};
    case Connectivity::C18:
      return {{0, -1, 1}, {-1, -1, 0}, {-1, 0, 1}, {-1, 1, 0}};
    case Connectivity::C26:
      return {{0, -1, 1}, {-1, -1, 1}, {-1, 0, 1}, {-1, 1, 1}};
  }
  return {};
}

Connectivity effective(Connectivity c, bool is_3d) {
  return connectivity_from_int(to_int(c), is_3d);
}

// ---- run extraction ------------------------------------------------------------------------

// Bit i set when p[i] != 0, for 64 consecutive pixels.
template <typename T>
inline uint64_t nonzero_mask64(const T* p) {
#if defined(__SSE2__)
  if constexpr (sizeof(T) == 1) {
    const __m128i zero = _mm_setzero_si128();
    uint64_t zero_bits = 0;
    for (int k = 0; k < 4; ++k) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
      zero_bits |=
          static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero))))
          << (16 * k);
    }
    return ~zero_bits;
  } else if constexpr (sizeof(T) == 2) {
    const __m128i zero = _mm_setzero_si128();
    uint64_t zero_bits = 0;
    for (int k = 0; k < 4; ++k) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k + 8));
      const __m128i packed = _mm_packs_epi16(_mm_cmpeq_epi16(a, zero), _mm_cmpeq_epi16(b, zero));
      zero_bits |= static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(packed)))
                   << (16 * k);
    }
    return ~zero_bits;
  }
#endif
  uint64_t m = 0;
  for (int i = 0; i < 64; ++i) m |= static_cast<uint64_t>(p[i] != 0) << i;
  return m;
}

// Appends the foreground runs of one row (label 0).
template <typename T>
void extract_runs_binary(const T* row, int64_t width, std::vector<Run>& runs) {
  uint64_t previous = 0;  // state of the pixel before the current chunk
  bool inside = false;
  uint32_t start = 0;
  auto emit = [&](uint64_t edges, int64_t base) {
    while (edges != 0) {
      const uint32_t x = static_cast<uint32_t>(base + std::countr_zero(edges));
      edges &= edges - 1;
      if (!inside) {
        start = x;
      } else {
        runs.push_back({start, x, 0});
      }
      inside = !inside;
    }
  };
  int64_t base = 0;
  for (; base + 64 <= width; base += 64) {
    const uint64_t m = nonzero_mask64(row + base);
    emit(m ^ ((m << 1) | previous), base);
    previous = m >> 63;
  }
  if (base < width) {
    const int n = static_cast<int>(width - base);
    uint64_t m = 0;
    for (int i = 0; i < n; ++i) m |= static_cast<uint64_t>(row[base + i] != 0) << i;
    emit((m ^ ((m << 1) | previous)) & ((uint64_t{1} << n) - 1), base);
  }
  if (inside) runs.push_back({start, static_cast<uint32_t>(width), 0});
}

// Appends the runs of equal non-zero values of one row (label 0).
template <typename T>
void extract_runs_multi(const T* row, int64_t width, std::vector<Run>& runs) {
  int64_t x = 0;
  while (x < width) {
    const T v = row[x];
    if (v == 0) {
      ++x;
      continue;
    }
    const int64_t s = x++;
    while (x < width && row[x] == v) ++x;
    runs.push_back({static_cast<uint32_t>(s), static_cast<uint32_t>(x), 0});
  }
}

// ---- flat union-find (labels grow in raster order; the root is the smallest label) ----------

inline uint32_t find_root(std::vector<uint32_t>& parent, uint32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

inline uint32_t unite_min(std::vector<uint32_t>& parent, uint32_t a, uint32_t b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a < b) {
    parent[b] = a;
    return a;
  }
  parent[a] = b;
  return b;
}

// ---- one band of rows ---------------------------------------------------------------------

struct Band {
  int64_t row0 = 0;
  int64_t row1 = 0;
  std::vector<uint32_t> row_start;  // runs of row row0 + i: [row_start[i], row_start[i + 1])
  std::vector<Run> runs;
  uint32_t count = 0;  // components inside the band; run labels are 1..count after scan_band
};

// Calls fn(i, k) for every pair of touching runs a[i], b[k] (a, b sorted by x0).
template <typename Fn>
inline void for_touching(const Run* a, size_t na, const Run* b, size_t nb, uint32_t ext, Fn&& fn) {
  size_t j = 0;
  for (size_t i = 0; i < na; ++i) {
    const Run& c = a[i];
    while (j < nb && b[j].x1 + ext <= c.x0) ++j;
    for (size_t k = j; k < nb && b[k].x0 < c.x1 + ext; ++k) fn(i, k);
  }
}

template <typename T, bool Multi>
void scan_band(const T* in, const Extents& e, const std::vector<NeighbourRow>& neighbours,
               Band& band) {
  const int64_t width = e.x;
  const int64_t rows = band.row1 - band.row0;
  band.row_start.assign(static_cast<size_t>(rows + 1), 0);
  band.runs.clear();
  // Room for one run per 8 pixels (blob-like images need fewer; noise more): growing the vector
  // copies it and touches fresh pages each time.
  band.runs.reserve(static_cast<size_t>(std::max<int64_t>(1024, rows * width / 8 + rows)));
  std::vector<uint32_t> parent{0};
  parent.reserve(1024);
  for (int64_t r = band.row0; r < band.row1; ++r) {
    const T* row = in + r * width;
    const size_t begin = band.runs.size();
    if constexpr (Multi) {
      extract_runs_multi(row, width, band.runs);
    } else {
      extract_runs_binary(row, width, band.runs);
    }
    const size_t end = band.runs.size();
    if (end > UINT32_MAX - 1)
      throw Unsupported("connected components: more than 2^32-2 runs in one image band");
    band.row_start[static_cast<size_t>(r - band.row0 + 1)] = static_cast<uint32_t>(end);
    if (begin == end) continue;
    const int64_t z = r / e.y;
    const int64_t y = r % e.y;
    Run* current = band.runs.data() + begin;
    for (const NeighbourRow& nb : neighbours) {
      const int64_t zz = z + nb.dz;
      const int64_t yy = y + nb.dy;
      if (zz < 0 || yy < 0 || yy >= e.y) continue;
      const int64_t rr = zz * e.y + yy;
      if (rr < band.row0) continue;
      const size_t pb = band.row_start[static_cast<size_t>(rr - band.row0)];
      const size_t pe = band.row_start[static_cast<size_t>(rr - band.row0 + 1)];
      if (pb == pe) continue;
      const Run* previous = band.runs.data() + pb;
      const T* prow = in + rr * width;
      for_touching(current, end - begin, previous, pe - pb, nb.ext, [&](size_t i, size_t k) {
        if constexpr (Multi) {
          if (prow[previous[k].x0] != row[current[i].x0]) return;
        }
        uint32_t& label = current[i].label;
        label = label == 0 ? find_root(parent, previous[k].label)
                           : unite_min(parent, label, previous[k].label);
      });
    }
    for (size_t i = begin; i < end; ++i) {
      if (band.runs[i].label == 0) {
        band.runs[i].label = static_cast<uint32_t>(parent.size());
        parent.push_back(static_cast<uint32_t>(parent.size()));
      }
    }
  }
  // Flatten: roots in increasing order are the components in raster order of their first run.
  std::vector<uint32_t> final_label(parent.size(), 0);
  uint32_t n = 0;
  for (size_t l = 1; l < parent.size(); ++l)
    final_label[l] = parent[l] == l ? ++n : final_label[parent[l]];
  for (Run& run : band.runs) run.label = final_label[run.label];
  band.count = n;
}

template <typename Map>
void write_band(const Band& band, int64_t width, uint32_t* out, Map&& map) {
  for (int64_t r = band.row0; r < band.row1; ++r) {
    uint32_t* o = out + r * width;
    uint32_t last = 0;
    const size_t b = band.row_start[static_cast<size_t>(r - band.row0)];
    const size_t e = band.row_start[static_cast<size_t>(r - band.row0 + 1)];
    for (size_t i = b; i < e; ++i) {
      const Run& run = band.runs[i];
      std::fill(o + last, o + run.x0, 0u);
      std::fill(o + run.x0, o + run.x1, map(run.label));
      last = run.x1;
    }
    std::fill(o + last, o + width, 0u);
  }
}

template <typename T, bool Multi>
uint32_t label_serial(const T* in, const Extents& e, uint32_t* out,
                      const std::vector<NeighbourRow>& neighbours) {
  Band band;
  band.row0 = 0;
  band.row1 = e.rows();
  scan_band<T, Multi>(in, e, neighbours, band);
  write_band(band, e.x, out, [](uint32_t l) { return l; });
  return band.count;
}

template <typename T, bool Multi>
uint32_t label_parallel(const T* in, const Extents& e, uint32_t* out,
                        const std::vector<NeighbourRow>& neighbours, int threads, bool own_arena,
                        int64_t band_rows) {
  const int64_t rows = e.rows();
  if (band_rows <= 0) {
    if (e.z >= 2 * threads) {
      band_rows = std::max<int64_t>(1, e.z / (4 * threads)) * e.y;  // whole slices
    } else {
      band_rows = std::max<int64_t>(1, (rows + 4 * threads - 1) / (4 * threads));
    }
  }
  const int64_t nbands = (rows + band_rows - 1) / band_rows;
  std::vector<Band> bands(static_cast<size_t>(nbands));
  for (int64_t b = 0; b < nbands; ++b) {
    bands[b].row0 = b * band_rows;
    bands[b].row1 = std::min(rows, (b + 1) * band_rows);
  }
  auto run_parallel = [&](auto&& body) {
    if (own_arena) {
      tbb::task_arena arena(threads);
      arena.execute([&] { tbb::parallel_for(tbb::blocked_range<int64_t>(0, nbands, 1), body); });
    } else {
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, nbands, 1), body);
    }
  };
  run_parallel([&](const tbb::blocked_range<int64_t>& range) {
    for (int64_t b = range.begin(); b < range.end(); ++b)
      scan_band<T, Multi>(in, e, neighbours, bands[b]);
  });

  // Join the bands: rows of band k whose neighbour rows lie in an earlier band.
  Equivalences eq;
  std::vector<uint32_t> offset(bands.size());
  for (size_t b = 0; b < bands.size(); ++b) offset[b] = eq.add_block(bands[b].count);
  auto band_of_row = [&](int64_t r) { return static_cast<size_t>(r / band_rows); };
  int64_t reach = 0;  // how many rows back the neighbourhood reaches
  for (const NeighbourRow& nb : neighbours) reach = std::max<int64_t>(reach, -nb.dz * e.y - nb.dy);
  for (size_t k = 1; k < bands.size(); ++k) {
    const Band& band = bands[k];
    const int64_t last_row = std::min(band.row1, band.row0 + reach);
    for (int64_t r = band.row0; r < last_row; ++r) {
      const size_t cb = band.row_start[static_cast<size_t>(r - band.row0)];
      const size_t ce = band.row_start[static_cast<size_t>(r - band.row0 + 1)];
      if (cb == ce) continue;
      const int64_t z = r / e.y;
      const int64_t y = r % e.y;
      const T* row = in + r * e.x;
      for (const NeighbourRow& nb : neighbours) {
        const int64_t zz = z + nb.dz;
        const int64_t yy = y + nb.dy;
        if (zz < 0 || yy < 0 || yy >= e.y) continue;
        const int64_t rr = zz * e.y + yy;
        if (rr >= band.row0) continue;
        const size_t j = band_of_row(rr);
        const Band& other = bands[j];
        const size_t pb = other.row_start[static_cast<size_t>(rr - other.row0)];
        const size_t pe = other.row_start[static_cast<size_t>(rr - other.row0 + 1)];
        if (pb == pe) continue;
        const Run* current = band.runs.data() + cb;
        const Run* previous = other.runs.data() + pb;
        const T* prow = in + rr * e.x;
        uint32_t last_a = 0, last_b = 0;
        for_touching(current, ce - cb, previous, pe - pb, nb.ext, [&](size_t i, size_t kk) {
          if constexpr (Multi) {
            if (prow[previous[kk].x0] != row[current[i].x0]) return;
          }
          const uint32_t a = offset[k] + current[i].label;
          const uint32_t b = offset[j] + previous[kk].label;
          if (a == last_a && b == last_b) return;
          last_a = a;
          last_b = b;
          eq.unite(a, b);
        });
      }
    }
  }
  std::vector<uint32_t> map;
  const uint32_t n = eq.finish(map);
  run_parallel([&](const tbb::blocked_range<int64_t>& range) {
    for (int64_t b = range.begin(); b < range.end(); ++b) {
      const uint32_t* m = map.data() + offset[b];
      write_band(bands[b], e.x, out, [m](uint32_t l) { return m[l]; });
    }
  });
  return n;
}

}  // namespace

template <typename T>
uint32_t label_components(const T* in, const Extents& e, uint32_t* out, const CclOptions& options) {
  UMAMBA_CHECK(e.x >= 0 && e.y >= 0 && e.z >= 0, "connected components: negative extent {}x{}x{}",
               e.z, e.y, e.x);
  UMAMBA_CHECK(e.x < int64_t{UINT32_MAX}, "connected components: rows of {} pixels are too long",
               e.x);
  if (e.pixels() == 0) return 0;
  const auto neighbours = neighbour_rows(effective(options.connectivity, e.is_3d()));
  int threads = options.threads;
  if (threads == 0) threads = tbb::this_task_arena::max_concurrency();
  UMAMBA_CHECK(threads >= 1, "connected components: threads must be >= 0, got {}", options.threads);
  const bool parallel = threads > 1 && e.rows() > 1;
  const bool own_arena = options.threads != 0;
  if (options.multi_label) {
    return parallel ? label_parallel<T, true>(in, e, out, neighbours, threads, own_arena,
                                              options.band_rows)
                    : label_serial<T, true>(in, e, out, neighbours);
  }
  return parallel ? label_parallel<T, false>(in, e, out, neighbours, threads, own_arena,
                                             options.band_rows)
                  : label_serial<T, false>(in, e, out, neighbours);
}

#define UMAMBA_INSTANTIATE(T) \
  template uint32_t label_components<T>(const T*, const Extents&, uint32_t*, const CclOptions&);
UMAMBA_INSTANTIATE(uint8_t)
UMAMBA_INSTANTIATE(int8_t)
UMAMBA_INSTANTIATE(uint16_t)
UMAMBA_INSTANTIATE(int16_t)
UMAMBA_INSTANTIATE(uint32_t)
UMAMBA_INSTANTIATE(int32_t)
UMAMBA_INSTANTIATE(uint64_t)
UMAMBA_INSTANTIATE(int64_t)
#undef UMAMBA_INSTANTIATE

Image label_components(const Image& in, const CclOptions& options, uint32_t* count) {
  UMAMBA_CHECK(!in.empty(), "connected components: the input image is empty");
  UMAMBA_CHECK(in.channels() == 1,
               "connected components: labels need one channel; got {} channels (shape {})",
               in.channels(), to_string(in.shape()));
  UMAMBA_CHECK(!dtype_is_float(in.dtype()),
               "connected components: input of dtype {} is floating point; threshold it first",
               dtype_name(in.dtype()));
  const Image src = in.contiguous();
  const Extents e{src.depth(), src.height(), src.width()};
  Image out = Image::zeros(DType::U32, Shape{1, e.z, e.y, e.x}, in.geometry());
  const uint32_t n = visit_dtype(src.dtype(), [&](auto tag) -> uint32_t {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T>) {
      return 0;  // refused above
    } else {
      return label_components<T>(src.data_as<T>(), e, out.data_as<uint32_t>(), options);
    }
  });
  if (count != nullptr) *count = n;
  return out;
}

}  // namespace umamba::postprocess
