// TIFF reading and writing: round trips over every dtype, layout and compression; region reads
// against crops of full reads; metadata (ImageJ, JSON description, resolution); the band writer;
// labels; pyramids.
#include <gtest/gtest.h>
#include <tiffio.h>

#include <atomic>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/memory.h"
#include "io/image_io.h"
#include "io/tiff_internal.h"
#include "io_test_util.h"

namespace umamba::io {
namespace {

using test::random_image;
using test::TempDir;

struct Layout {
  const char* name;
  int64_t tile;
  bool planar;
};
constexpr Layout kLayouts[] = {{"strips", -1, false},
                               {"tiles16", 16, false},
                               {"planar-strips", -1, true},
                               {"planar-tiles32", 32, true}};
constexpr Compression kCompressions[] = {Compression::None, Compression::Deflate, Compression::Zstd,
                                         Compression::Lzw};

// Plain reference for region reads: the full image, cropped by Image::region and copied.
Image crop(const Image& full, const Box& b) {
  return full.region(b).clone();
}

TEST(Io_Tiff, roundtrip_every_dtype_layout_compression) {
  TempDir dir;
  int files = 0;
  for (DType dtype : test::kAllDTypes) {
    for (Compression comp : kCompressions) {
      for (const Layout& layout : kLayouts) {
        for (int64_t channels : {1, 3}) {
          for (int64_t depth : {1, 3}) {
            const Shape shape{channels, depth, 37, 45};
            const Image img = random_image(dtype, shape, static_cast<uint32_t>(files));
            WriteOptions opt;
            opt.compression = comp;
            opt.tile_size = layout.tile;
            opt.planar = layout.planar;
            const auto path = dir / fmt::format("f{}.tif", files++);
            write_image(path, img, opt);
            auto reader = open_image(path);
            const ImageInfo& info = reader->info();
            ASSERT_EQ(info.format, "tiff");
            ASSERT_EQ(info.shape, shape);
            ASSERT_EQ(info.dtype, dtype);
            EXPECT_EQ(info.metadata.at("tiff.compression"), compression_name(comp));
            EXPECT_EQ(info.metadata.at("tiff.planar"),
                      layout.planar && channels > 1 ? "separate" : "contiguous");
            EXPECT_EQ(
                info.metadata.at("tiff.layout").rfind(layout.tile > 0 ? "tiles" : "strips", 0), 0u);
            const Image back = reader->read();
            ASSERT_TRUE(back.same_pixels(img))
                << dtype_name(dtype) << " " << compression_name(comp) << " " << layout.name
                << " C=" << channels << " Z=" << depth;
          }
        }
      }
    }
  }
  EXPECT_EQ(files, 10 * 4 * 4 * 2 * 2);
}

TEST(Io_Tiff, region_reads_equal_crops_of_full_reads) {
  TempDir dir;
  std::mt19937 rng(42);
  int checked = 0;
  for (const Layout& layout : kLayouts) {
    for (int64_t channels : {1, 4}) {
      const Shape shape{channels, 4, 150, 133};
      const Image img = random_image(DType::U16, shape, 7);
      WriteOptions opt;
      opt.tile_size = layout.tile;
      opt.planar = layout.planar;
      const auto path = dir / (std::string(layout.name) + std::to_string(channels) + ".tif");
      write_image(path, img, opt);
      auto reader = open_image(path);
      const Image full = reader->read();
      ASSERT_TRUE(full.same_pixels(img));
      for (int i = 0; i < 60; ++i) {
        Box b;
        b.dz = std::uniform_int_distribution<int64_t>(1, shape.z)(rng);
        b.dy = std::uniform_int_distribution<int64_t>(1, shape.y)(rng);
        b.dx = std::uniform_int_distribution<int64_t>(1, shape.x)(rng);
        b.z0 = std::uniform_int_distribution<int64_t>(0, shape.z - b.dz)(rng);
        b.y0 = std::uniform_int_distribution<int64_t>(0, shape.y - b.dy)(rng);
        b.x0 = std::uniform_int_distribution<int64_t>(0, shape.x - b.dx)(rng);
        const Image region = reader->read_region(b);
        ASSERT_TRUE(region.same_pixels(crop(full, b)))
            << layout.name << " box z" << b.z0 << "+" << b.dz << " y" << b.y0 << "+" << b.dy << " x"
            << b.x0 << "+" << b.dx;
        ++checked;
      }
      // Single pixels at the corners and tile edges.
      for (int64_t y :
           {int64_t{0}, int64_t{15}, int64_t{16}, int64_t{31}, int64_t{32}, shape.y - 1}) {
        for (int64_t x : {int64_t{0}, int64_t{16}, int64_t{31}, shape.x - 1}) {
          const Box b{shape.z - 1, y, x, 1, 1, 1};
          ASSERT_TRUE(reader->read_region(b).same_pixels(crop(full, b)));
        }
      }
    }
  }
  EXPECT_EQ(checked, 4 * 2 * 60);
}

// Threads sharing one reader: every region equals the crop of a full read (each read decodes in
// parallel inside too, with decoders taken from the reader's pool).
TEST(Io_Tiff, concurrent_region_reads_from_threads) {
  TempDir dir;
  const Shape shape{2, 3, 300, 257};
  const Image img = random_image(DType::U16, shape, 21);
  WriteOptions opt;
  opt.tile_size = 32;
  write_image(dir / "c.tif", img, opt);
  auto reader = open_image(dir / "c.tif");
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0}, reads{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<uint32_t>(t));
      for (int i = 0; i < 25; ++i) {
        Box b;
        b.dz = std::uniform_int_distribution<int64_t>(1, shape.z)(rng);
        b.dy = std::uniform_int_distribution<int64_t>(1, shape.y)(rng);
        b.dx = std::uniform_int_distribution<int64_t>(1, shape.x)(rng);
        b.z0 = std::uniform_int_distribution<int64_t>(0, shape.z - b.dz)(rng);
        b.y0 = std::uniform_int_distribution<int64_t>(0, shape.y - b.dy)(rng);
        b.x0 = std::uniform_int_distribution<int64_t>(0, shape.x - b.dx)(rng);
        if (!reader->read_region(b).same_pixels(crop(img, b))) ++mismatches;
        ++reads;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(reads.load(), 150);
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_TRUE(reader->read().same_pixels(img));
}

TEST(Io_Tiff, region_geometry_moves_origin) {
  TempDir dir;
  Image img = random_image(DType::U8, Shape{1, 3, 20, 30}, 1);
  img.geometry().spacing = {2.0, 0.5, 0.25};
  img.geometry().unit = "um";
  write_image(dir / "g.tif", img);
  auto reader = open_image(dir / "g.tif");
  const Image r = reader->read_region(Box{1, 4, 8, 2, 5, 6});
  EXPECT_DOUBLE_EQ(r.geometry().origin[0], 8 * 0.25);
  EXPECT_DOUBLE_EQ(r.geometry().origin[1], 4 * 0.5);
  EXPECT_DOUBLE_EQ(r.geometry().origin[2], 1 * 2.0);
}

TEST(Io_Tiff, region_outside_the_image_is_an_error) {
  TempDir dir;
  write_image(dir / "a.tif", random_image(DType::U8, Shape{1, 1, 10, 10}, 1));
  auto reader = open_image(dir / "a.tif");
  EXPECT_THROW(reader->read_region(Box{0, 5, 5, 1, 6, 1}), Error);
  EXPECT_THROW(reader->read_region(Box{0, -1, 0, 1, 2, 2}), Error);
  EXPECT_THROW(reader->read_region(Box{1, 0, 0, 1, 2, 2}), Error);
  EXPECT_THROW(reader->read_region(Box{0, 0, 0, 1, 0, 2}), Error);
}

TEST(Io_Tiff, imagej_stack_keeps_spacing) {
  TempDir dir;
  for (DType dtype : {DType::U8, DType::U16, DType::F32}) {
    Image img = random_image(dtype, Shape{1, 5, 20, 30}, 3);
    img.geometry().spacing = {2.0, 0.5, 0.25};
    img.geometry().unit = "um";
    const auto path = dir / "ij.tif";
    write_image(path, img);
    auto reader = open_image(path);
    const ImageInfo& info = reader->info();
    EXPECT_EQ(info.metadata.at("tiff.imagej"), "true");
    EXPECT_EQ(info.geometry.unit, "um");
    EXPECT_DOUBLE_EQ(info.geometry.spacing[0], 2.0);
    EXPECT_NEAR(info.geometry.spacing[1], 0.5, 1e-7);
    EXPECT_NEAR(info.geometry.spacing[2], 0.25, 1e-7);
    EXPECT_TRUE(reader->read().same_pixels(img));
  }
}

TEST(Io_Tiff, other_stacks_keep_exact_spacing_in_json) {
  TempDir dir;
  // i16 cannot be ImageJ; uncompressed u16 and BigTIFF are not ImageJ either.
  struct Case {
    DType dtype;
    Compression comp;
    bool bigtiff;
  };
  for (const Case& c :
       {Case{DType::I16, Compression::Deflate, false}, Case{DType::U16, Compression::None, false},
        Case{DType::U8, Compression::Zstd, true}}) {
    Image img = random_image(c.dtype, Shape{1, 4, 16, 16}, 4);
    img.geometry().spacing = {0.2837183895131086, 0.12756971653115998, 0.1};
    img.geometry().unit = "mm";
    WriteOptions opt;
    opt.compression = c.comp;
    opt.bigtiff = c.bigtiff;
    write_image(dir / "s.tif", img, opt);
    auto reader = open_image(dir / "s.tif");
    EXPECT_EQ(reader->info().metadata.count("tiff.imagej"), 0u);
    EXPECT_EQ(reader->info().metadata.at("tiff.bigtiff"), c.bigtiff ? "true" : "false");
    EXPECT_EQ(reader->info().geometry.spacing, img.geometry().spacing);
    EXPECT_EQ(reader->info().geometry.unit, "mm");
  }
}

// A file whose spacing is only in the resolution tags, as scanners and many tools write it.
TEST(Io_Tiff, resolution_tags_give_spacing_in_micrometres) {
  TempDir dir;
  for (uint16_t unit : {uint16_t{RESUNIT_CENTIMETER}, uint16_t{RESUNIT_INCH}}) {
    const auto path = dir / "res.tif";
    TIFF* tif = TIFFOpen(path.c_str(), "w");
    ASSERT_NE(tif, nullptr);
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, 4u);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, 2u);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, uint16_t{8});
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, uint16_t{1});
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, 2u);
    TIFFSetField(tif, TIFFTAG_RESOLUTIONUNIT, unit);
    // 0.5 µm and 0.25 µm pixels
    const double per_unit = unit == RESUNIT_CENTIMETER ? 1e4 : 25400.0;
    TIFFSetField(tif, TIFFTAG_XRESOLUTION, static_cast<float>(per_unit / 0.5));
    TIFFSetField(tif, TIFFTAG_YRESOLUTION, static_cast<float>(per_unit / 0.25));
    uint8_t pixels[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ASSERT_EQ(TIFFWriteEncodedStrip(tif, 0, pixels, 8), 8);
    TIFFClose(tif);
    const Image img = read_image(path);
    EXPECT_EQ(img.geometry().unit, "um");
    EXPECT_NEAR(img.geometry().spacing[2], 0.5, 1e-6);
    EXPECT_NEAR(img.geometry().spacing[1], 0.25, 1e-6);
    EXPECT_EQ(img.data_as<uint8_t>()[7], 8);
  }
}

TEST(Io_Tiff, predictor_and_level_keep_pixels_and_predictor_helps_smooth_data) {
  TempDir dir;
  Image ramp = Image::zeros(DType::U16, Shape{1, 1, 256, 256});
  for (int64_t y = 0; y < 256; ++y)
    for (int64_t x = 0; x < 256; ++x) ramp.at<uint16_t>(0, 0, y, x) = uint16_t(x * 100 + y * 37);
  uintmax_t sizes[2];
  for (int with : {0, 1}) {
    WriteOptions opt;
    opt.predictor = with ? Predictor::Horizontal : Predictor::None;
    const auto path = dir / fmt::format("p{}.tif", with);
    write_image(path, ramp, opt);
    EXPECT_TRUE(read_image(path).same_pixels(ramp));
    sizes[with] = std::filesystem::file_size(path);
  }
  EXPECT_LT(sizes[1] * 4, sizes[0]) << "without " << sizes[0] << " with " << sizes[1];
  Image noise = random_image(DType::F32, Shape{1, 1, 64, 64}, 9);
  for (int level : {1, 9}) {
    WriteOptions opt;
    opt.compression_level = level;
    opt.predictor = Predictor::FloatingPoint;
    write_image(dir / "f.tif", noise, opt);
    EXPECT_TRUE(read_image(dir / "f.tif").same_pixels(noise));
  }
}

TEST(Io_Tiff, band_writer_takes_bands_of_any_height) {
  TempDir dir;
  std::mt19937 rng(5);
  for (int64_t tile : {int64_t{-1}, int64_t{16}, int64_t{48}}) {
    const Shape shape{2, 3, 101, 77};
    const Image img = random_image(DType::I32, shape, 11);
    WriteOptions opt;
    opt.tile_size = tile;
    const auto path = dir / fmt::format("b{}.tif", tile);
    TiffBandWriter writer(path, shape, DType::I32, {}, opt);
    for (int64_t z = 0; z < shape.z; ++z) {
      int64_t y = 0;
      while (y < shape.y) {
        ASSERT_EQ(writer.next_slice(), z);
        ASSERT_EQ(writer.next_row(), y);
        const int64_t n = std::min(shape.y - y, std::uniform_int_distribution<int64_t>(1, 40)(rng));
        writer.write_band(img.region(Box{z, y, 0, 1, n, shape.x}));
        y += n;
      }
    }
    EXPECT_FALSE(std::filesystem::exists(path)) << "visible before finish()";
    writer.finish();
    EXPECT_TRUE(read_image(path).same_pixels(img)) << "tile " << tile;
  }
}

// The parallel tile encoder must produce exactly the bytes of libtiff's own one-thread path.
TEST(Io_Tiff, parallel_tile_encoding_is_byte_identical_to_libtiff) {
  TempDir dir;
  struct Case {
    DType dtype;
    int64_t channels;
    bool planar;
  };
  int n = 0;
  for (const Case& c : {Case{DType::U8, 1, false}, Case{DType::U16, 3, false},
                        Case{DType::F32, 2, true}, Case{DType::I64, 1, false}}) {
    for (Compression comp : {Compression::Deflate, Compression::Zstd, Compression::Lzw}) {
      Image img = random_image(c.dtype, Shape{c.channels, 2, 100, 90}, static_cast<uint32_t>(n));
      // Make half of it smooth so that predictors and codecs take different paths.
      visit_dtype(c.dtype, [&](auto tag) {
        using T = decltype(tag);
        T* p = img.data_as<T>();
        for (int64_t i = 0; i < img.element_count() / 2; ++i) p[i] = static_cast<T>(i % 97);
      });
      WriteOptions opt;
      opt.compression = comp;
      opt.tile_size = 16;
      opt.planar = c.planar;
      opt.parallel = false;
      const auto serial = dir / fmt::format("s{}.tif", n);
      const auto parallel = dir / fmt::format("p{}.tif", n);
      write_image(serial, img, opt);
      opt.parallel = true;
      write_image(parallel, img, opt);
      EXPECT_EQ(test::read_bytes(serial), test::read_bytes(parallel))
          << dtype_name(c.dtype) << " " << compression_name(comp);
      EXPECT_TRUE(read_image(parallel).same_pixels(img));
      ++n;
    }
  }
}

TEST(Io_Tiff, band_writer_rejects_wrong_bands) {
  TempDir dir;
  const Shape shape{1, 1, 20, 10};
  TiffBandWriter writer(dir / "w.tif", shape, DType::U8);
  EXPECT_THROW(writer.write_band(Image::zeros(DType::U16, Shape{1, 1, 5, 10})), Error);
  EXPECT_THROW(writer.write_band(Image::zeros(DType::U8, Shape{1, 1, 5, 11})), Error);
  EXPECT_THROW(writer.write_band(Image::zeros(DType::U8, Shape{2, 1, 5, 10})), Error);
  EXPECT_THROW(writer.write_band(Image::zeros(DType::U8, Shape{1, 1, 21, 10})), Error);
  writer.write_band(Image::zeros(DType::U8, Shape{1, 1, 5, 10}));
  EXPECT_THROW(writer.finish(), Error);  // 15 rows missing
  writer.write_band(Image::zeros(DType::U8, Shape{1, 1, 15, 10}));
  writer.finish();
  EXPECT_TRUE(std::filesystem::exists(dir / "w.tif"));
}

TEST(Io_Tiff, labels_are_u16_or_u32) {
  TempDir dir;
  Image labels = Image::zeros(DType::I64, Shape{1, 2, 8, 8});
  labels.at<int64_t>(0, 1, 7, 7) = 65535;
  write_labels(dir / "l16.tif", labels);
  Image back = read_image(dir / "l16.tif");
  EXPECT_EQ(back.dtype(), DType::U16);
  EXPECT_EQ(back.at<uint16_t>(0, 1, 7, 7), 65535);
  labels.at<int64_t>(0, 0, 3, 2) = 65536;
  write_labels(dir / "l32.tif", labels);
  back = read_image(dir / "l32.tif");
  EXPECT_EQ(back.dtype(), DType::U32);
  EXPECT_EQ(back.at<uint32_t>(0, 0, 3, 2), 65536u);
  EXPECT_TRUE(back.same_pixels(labels.cast(DType::U32)));
  labels.at<int64_t>(0, 0, 0, 0) = -1;
  EXPECT_THROW(write_labels(dir / "neg.tif", labels), Error);
  labels.at<int64_t>(0, 0, 0, 0) = int64_t{1} << 33;
  EXPECT_THROW(write_labels(dir / "big.tif", labels), Error);
  EXPECT_THROW(write_labels(dir / "f.tif", Image::zeros(DType::F32, Shape{1, 1, 2, 2})), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "neg.tif"));
}

// Level 0 of a pyramid stored as reduced-resolution pages (FILETYPE_REDUCEDIMAGE).
TEST(Io_Tiff, pyramid_reads_level_zero) {
  TempDir dir;
  const auto path = dir / "pyr.tif";
  TIFF* tif = TIFFOpen(path.c_str(), "w");
  ASSERT_NE(tif, nullptr);
  std::vector<uint8_t> level0(64 * 48), level1(32 * 24, 200);
  for (size_t i = 0; i < level0.size(); ++i) level0[i] = static_cast<uint8_t>(i * 7);
  auto page = [&](uint32_t w, uint32_t h, uint32_t subfile, std::vector<uint8_t>& px) {
    TIFFSetField(tif, TIFFTAG_SUBFILETYPE, subfile);
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, w);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, h);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, uint16_t{8});
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, uint16_t{1});
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(tif, TIFFTAG_TILEWIDTH, 16u);
    TIFFSetField(tif, TIFFTAG_TILELENGTH, 16u);
    std::vector<uint8_t> t(256);
    for (uint32_t ty = 0; ty < h; ty += 16)
      for (uint32_t tx = 0; tx < w; tx += 16) {
        for (uint32_t y = 0; y < 16; ++y)
          for (uint32_t x = 0; x < 16; ++x)
            t[y * 16 + x] = (ty + y < h && tx + x < w) ? px[(ty + y) * w + tx + x] : 0;
        TIFFWriteTile(tif, t.data(), tx, ty, 0, 0);
      }
    TIFFWriteDirectory(tif);
  };
  page(64, 48, 0, level0);
  page(32, 24, FILETYPE_REDUCEDIMAGE, level1);
  TIFFClose(tif);
  auto reader = open_image(path);
  EXPECT_EQ(reader->info().shape, (Shape{1, 1, 48, 64}));
  EXPECT_EQ(reader->info().metadata.at("tiff.reduced_pages_skipped"), "1");
  const Image img = reader->read();
  for (int64_t i = 0; i < 64 * 48; ++i) {
    ASSERT_EQ(img.data_as<uint8_t>()[i], level0[static_cast<size_t>(i)]) << i;
  }
}

TEST(Io_Tiff, imagej_description_parser) {
  auto ij = tiff::parse_imagej_description(
      "ImageJ=1.53t\nimages=30\nchannels=3\nslices=10\nhyperstack=true\nunit=\\u00B5m\n"
      "spacing=0.75\nloop=false\n");
  ASSERT_TRUE(ij);
  EXPECT_EQ(ij->images, 30);
  EXPECT_EQ(ij->channels, 3);
  EXPECT_EQ(ij->slices, 10);
  EXPECT_EQ(ij->unit, "um");
  EXPECT_DOUBLE_EQ(*ij->spacing, 0.75);
  EXPECT_FALSE(tiff::parse_imagej_description("{\"shape\": [3]}"));
  // Garbage values are ignored, never trusted.
  ij = tiff::parse_imagej_description("ImageJ=\nimages=-5\nchannels=1e99\nspacing=nan\n");
  ASSERT_TRUE(ij);
  EXPECT_EQ(ij->images, 0);
  EXPECT_EQ(ij->channels, 1);
  EXPECT_FALSE(ij->spacing);
  const auto text = tiff::format_imagej_description(7, "um", 2.5);
  ij = tiff::parse_imagej_description(text);
  ASSERT_TRUE(ij);
  EXPECT_EQ(ij->slices, 7);
  EXPECT_EQ(ij->unit, "um");
  EXPECT_DOUBLE_EQ(*ij->spacing, 2.5);
  auto js = tiff::parse_json_description(
      "{\"shape\": [100, 100, 100], \"element_size_um_zyx\": [0.28, 0.12, 0.12]}");
  ASSERT_TRUE(js && js->spacing);
  EXPECT_EQ(js->unit, "um");
  EXPECT_DOUBLE_EQ((*js->spacing)[0], 0.28);
  EXPECT_FALSE(tiff::parse_json_description("{not json"));
}

TEST(Io_Tiff, ome_description_parser) {
  const auto ome = tiff::parse_ome_description(
      "<?xml version=\"1.0\"?><OME xmlns=\"x\"><Image ID=\"Image:0\"><Pixels ID=\"Pixels:0\" "
      "DimensionOrder=\"XYCZT\" Type=\"uint16\" SizeX=\"40\" SizeY=\"30\" SizeZ=\"4\" "
      "SizeC='3' SizeT=\"2\" PhysicalSizeX=\"250\" PhysicalSizeXUnit=\"nm\" "
      "PhysicalSizeY=\"0.5\" PhysicalSizeZ=\"0.002\" PhysicalSizeZUnit=\"mm\">"
      "<TiffData IFD=\"0\" PlaneCount=\"24\"/></Pixels></Image></OME>");
  ASSERT_TRUE(ome);
  EXPECT_EQ(ome->dimension_order, "XYCZT");
  EXPECT_EQ(ome->size_x, 40);
  EXPECT_EQ(ome->size_c, 3);
  EXPECT_EQ(ome->size_t_, 2);
  EXPECT_DOUBLE_EQ(*ome->um_x, 0.25);
  EXPECT_DOUBLE_EQ(*ome->um_y, 0.5);
  EXPECT_DOUBLE_EQ(*ome->um_z, 2.0);
  EXPECT_TRUE(ome->single_tiffdata);
  // A multi-file set (UUID references) is not mapped; malformed XML gives nothing or defaults.
  EXPECT_FALSE(tiff::parse_ome_description(
                   "<OME><Pixels SizeX=\"2\"><TiffData><UUID FileName=\"b.tif\">u</UUID>"
                   "</TiffData></Pixels></OME>")
                   ->single_tiffdata);
  EXPECT_FALSE(tiff::parse_ome_description("<OME><Pixels SizeX=\"2"));
  EXPECT_FALSE(tiff::parse_ome_description("ImageJ=1"));
  const auto odd = tiff::parse_ome_description("<OME><Pixels SizeZ=\"-4\" SizeC=x>");
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->size_z, 1);
}

TEST(Io_Tiff, missing_and_unknown_files_are_file_errors) {
  TempDir dir;
  EXPECT_THROW(open_image(dir / "absent.tif"), FileError);
  test::write_bytes(dir / "x.xyz", {1, 2, 3, 4, 5}, 5);
  EXPECT_THROW(open_image(dir / "x.xyz"), FileError);
  EXPECT_THROW(open_image(dir.path()), FileError);
  test::write_bytes(dir / "empty.tif", {}, 0);
  EXPECT_THROW(open_image(dir / "empty.tif"), FileError);
  EXPECT_THROW(write_image(dir / "x.xyz", Image::zeros(DType::U8, Shape{1, 1, 1, 1})), Error);
}

TEST(Io_Tiff, content_wins_over_extension) {
  TempDir dir;
  const Image img = random_image(DType::U16, Shape{1, 1, 9, 9}, 2);
  write_image(dir / "a.tif", img);
  std::filesystem::rename(dir / "a.tif", dir / "a.nii");
  const Image back = read_image(dir / "a.nii");
  EXPECT_TRUE(back.same_pixels(img));
}

TEST(Io_Tiff, allocation_limit_refuses_full_read_but_regions_work) {
  TempDir dir;
  const Image img = random_image(DType::U8, Shape{1, 1, 512, 512}, 3);
  WriteOptions opt;
  opt.tile_size = 64;
  write_image(dir / "a.tif", img, opt);
  const size_t saved = allocation_limit();
  set_allocation_limit(100000);  // below 512*512 bytes, above one 64x64 tile
  auto reader = open_image(dir / "a.tif");
  EXPECT_THROW(reader->read(), Unsupported);
  const Box b{0, 100, 200, 1, 100, 100};
  const Image r = reader->read_region(b);
  set_allocation_limit(saved);
  EXPECT_TRUE(r.same_pixels(img.region(b).clone()));
}

}  // namespace
}  // namespace umamba::io
