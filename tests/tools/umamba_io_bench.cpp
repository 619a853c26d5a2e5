// umamba_io_bench: timings of the TIFF writer and region reader on a large tiled uint8 image,
// each beside a baseline measured in the same run (test helper; not installed).
//
//   umamba_io_bench [--side N] [--dir DIR] [--keep]
//
// Baselines: writing = a plain libtiff loop (TIFFWriteEncodedTile of 512×512 deflate-6 tiles with
// the horizontal predictor, the same settings our writer uses); reading = a plain libtiff loop
// decoding every tile (TIFFReadEncodedTile). Ours: TiffBandWriter fed 1000-row bands, and
// read_region over 2048×2048 boxes covering the image, and one 2048×2048 box alone (which must
// cost a small fraction of a full decode, since only its tiles are decoded). Reports seconds,
// ratios and the peak resident memory above the start.
#include <tiffio.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <tbb/info.h>

#include "core/memory.h"
#include "io/image_io.h"

namespace {

using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

inline uint8_t pixel(int64_t y, int64_t x) {
  return static_cast<uint8_t>(((x >> 3) ^ (y >> 3)) + ((x * y) >> 11) + (x % 7) * 3);
}

void fill_band(std::vector<uint8_t>& band, int64_t y0, int64_t rows, int64_t side) {
  for (int64_t y = 0; y < rows; ++y)
    for (int64_t x = 0; x < side; ++x) band[y * side + x] = pixel(y0 + y, x);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t side = 20000;
  std::filesystem::path dir = std::filesystem::temp_directory_path();
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--side" && i + 1 < argc) {
      side = std::stoll(argv[++i]);
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--keep") {
      keep = true;
    } else {
      std::fprintf(stderr, "usage: umamba_io_bench [--side N] [--dir DIR] [--keep]\n");
      return 2;
    }
  }
  const auto base_path = dir / "umamba_io_bench_baseline.tif";
  const auto ours_path = dir / "umamba_io_bench_ours.tif";
  const int64_t tile = 512, band_rows = 1000;
  const size_t start_rss = umamba::current_resident_bytes();
  std::printf(
      "image %lldx%lld u8 (%.0f MB), tiles %lld, deflate 6 + horizontal predictor, "
      "%d TBB threads\n",
      static_cast<long long>(side), static_cast<long long>(side), side * side / 1e6,
      static_cast<long long>(tile), tbb::info::default_concurrency());

  // ---- generating the pixels alone (both writers pay it)
  std::vector<uint8_t> band(static_cast<size_t>(band_rows * side));
  auto t0 = clock_type::now();
  for (int64_t y0 = 0; y0 < side; y0 += band_rows) {
    fill_band(band, y0, std::min(band_rows, side - y0), side);
  }
  const double t_gen = since(t0);

  // ---- baseline write: libtiff directly, one 512-row tile band at a time
  t0 = clock_type::now();
  {
    TIFF* tif = TIFFOpen(base_path.c_str(), "w");
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, static_cast<uint32_t>(side));
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, static_cast<uint32_t>(side));
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, uint16_t{8});
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, uint16_t{1});
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
    TIFFSetField(tif, TIFFTAG_ZIPQUALITY, 6);
    TIFFSetField(tif, TIFFTAG_PREDICTOR, PREDICTOR_HORIZONTAL);
    TIFFSetField(tif, TIFFTAG_TILEWIDTH, static_cast<uint32_t>(tile));
    TIFFSetField(tif, TIFFTAG_TILELENGTH, static_cast<uint32_t>(tile));
    std::vector<uint8_t> rows(static_cast<size_t>(tile * side)),
        t(static_cast<size_t>(tile * tile));
    for (int64_t ty = 0; ty < side; ty += tile) {
      fill_band(rows, ty, std::min(tile, side - ty), side);
      for (int64_t tx = 0; tx < side; tx += tile) {
        std::fill(t.begin(), t.end(), 0);
        for (int64_t y = 0; y < tile && ty + y < side; ++y) {
          std::memcpy(&t[y * tile], &rows[y * side + tx], std::min(tile, side - tx));
        }
        TIFFWriteTile(tif, t.data(), static_cast<uint32_t>(tx), static_cast<uint32_t>(ty), 0, 0);
      }
    }
    TIFFClose(tif);
  }
  const double t_base_write = since(t0);

  // ---- ours: TiffBandWriter with 1000-row bands, on one thread and with parallel tiles
  auto write_ours = [&](bool parallel) {
    umamba::io::WriteOptions opt;
    opt.parallel = parallel;
    umamba::io::TiffBandWriter writer(ours_path, umamba::Shape{1, 1, side, side}, umamba::DType::U8,
                                      {}, opt);
    for (int64_t y0 = 0; y0 < side; y0 += band_rows) {
      const int64_t rows = std::min(band_rows, side - y0);
      fill_band(band, y0, rows, side);
      writer.write_band(
          umamba::Image::wrap(band.data(), umamba::DType::U8, umamba::Shape{1, 1, rows, side},
                              umamba::Shape{rows * side, rows * side, side, 1}, nullptr));
    }
    writer.finish();
  };
  t0 = clock_type::now();
  write_ours(false);
  const double t_write_serial = since(t0);
  umamba::reset_peak_resident();
  t0 = clock_type::now();
  write_ours(true);
  const double t_write = since(t0);
  const size_t write_peak = umamba::peak_resident_bytes();

  // ---- baseline read: every tile decoded by libtiff
  t0 = clock_type::now();
  uint64_t checksum_base = 0;
  {
    TIFF* tif = TIFFOpen(ours_path.c_str(), "rm");
    std::vector<uint8_t> t(static_cast<size_t>(TIFFTileSize(tif)));
    for (uint32_t i = 0; i < TIFFNumberOfTiles(tif); ++i) {
      TIFFReadEncodedTile(tif, i, t.data(), -1);
      checksum_base += t[i % t.size()];
    }
    TIFFClose(tif);
  }
  const double t_base_read = since(t0);

  // ---- ours: 2048² regions over the image, and one region alone
  umamba::reset_peak_resident();
  t0 = clock_type::now();
  uint64_t checksum = 0;
  auto reader = umamba::io::open_image(ours_path);
  for (int64_t y0 = 0; y0 < side; y0 += 2048) {
    for (int64_t x0 = 0; x0 < side; x0 += 2048) {
      const umamba::Box b{
          0, y0, x0, 1, std::min<int64_t>(2048, side - y0), std::min<int64_t>(2048, side - x0)};
      const umamba::Image r = reader->read_region(b);
      checksum += r.data_as<uint8_t>()[0];
    }
  }
  const double t_read = since(t0);
  const size_t read_peak = umamba::peak_resident_bytes();
  t0 = clock_type::now();
  const umamba::Image one =
      reader->read_region(umamba::Box{0, side / 2, side / 2, 1, std::min<int64_t>(2048, side / 2),
                                      std::min<int64_t>(2048, side / 2)});
  const double t_one = since(t0);

  const double mb = side * side / 1e6;
  std::printf("generating pixels            %7.2f s\n", t_gen);
  std::printf("write  baseline libtiff loop %7.2f s  (%.0f MB/s)\n", t_base_write,
              mb / t_base_write);
  std::printf("write  TiffBandWriter 1 thread %6.2f s  (%.0f MB/s)  ratio %.2f x baseline\n",
              t_write_serial, mb / t_write_serial, t_write_serial / t_base_write);
  std::printf(
      "write  TiffBandWriter parallel %6.2f s  (%.0f MB/s)  ratio %.2f x baseline; "
      "file %.1f MB; peak +%.1f MB\n",
      t_write, mb / t_write, t_write / t_base_write, std::filesystem::file_size(ours_path) / 1e6,
      (write_peak - start_rss) / 1e6);
  std::printf("read   baseline every tile   %7.2f s  (%.0f MB/s)\n", t_base_read, mb / t_base_read);
  std::printf(
      "read   2048^2 regions, all   %7.2f s  (%.0f MB/s)  ratio %.2f x baseline; "
      "peak +%.1f MB\n",
      t_read, mb / t_read, t_read / t_base_read, (read_peak - start_rss) / 1e6);
  std::printf("read   one 2048^2 region     %7.3f s  = %.4f x the full baseline decode\n", t_one,
              t_one / t_base_read);
  if (!keep) {
    std::filesystem::remove(base_path);
    std::filesystem::remove(ours_path);
  }
  return (checksum_base == 0 && checksum == 0) ? 1 : 0;
}
