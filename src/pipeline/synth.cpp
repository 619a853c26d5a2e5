// The `umamba synth` job; the layouts are described in synth.h.
#include "pipeline/synth.h"

#include <fmt/format.h>

#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/build_info.h"
#include "core/error.h"
#include "core/log.h"
#include "io/atomic_file.h"
#include "postprocess/targets.h"

namespace umamba::pipeline {

namespace fs = std::filesystem;
using nlohmann::json;

SynthLayout synth_layout_from_name(const std::string& name) {
  if (name == "neurips") return SynthLayout::Neurips;
  if (name == "nnunet") return SynthLayout::Nnunet;
  fail("synth: layout '{}' is not 'neurips' or 'nnunet'", name);
}

NnunetLabels nnunet_labels_from_name(const std::string& name) {
  if (name == "instances") return NnunetLabels::Instances;
  if (name == "classes") return NnunetLabels::Classes;
  fail("synth: nnU-Net labels '{}' are not 'instances' or 'classes'", name);
}

void parse_synth_size(const std::string& text, synth::SynthParams& params) {
  std::vector<int64_t> dims;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find('x', start), text.size());
    int64_t v = 0;
    const char* first = text.data() + start;
    const char* last = text.data() + end;
    const auto [ptr, ec] = std::from_chars(first, last, v);
    UMAMBA_CHECK(ec == std::errc() && ptr == last && v > 0 && end > start,
                 "synth: size '{}' must be YxX or ZxYxX with positive integers (e.g. 512x512, "
                 "64x256x256)",
                 text);
    dims.push_back(v);
    start = end + 1;
  }
  UMAMBA_CHECK(dims.size() == 2 || dims.size() == 3,
               "synth: size '{}' must have 2 (YxX) or 3 (ZxYxX) numbers", text);
  params.depth = dims.size() == 3 ? dims[0] : 1;
  params.height = dims[dims.size() - 2];
  params.width = dims[dims.size() - 1];
}

namespace {

json params_json(const synth::SynthParams& p) {
  return json{{"size_zyx", {p.depth, p.height, p.width}},
              {"channels", p.channels},
              {"dtype", std::string(dtype_name(p.dtype))},
              {"spacing_xy_um", p.spacing_xy},
              {"spacing_z_um", p.spacing_z},
              {"cells", p.cells},
              {"density", p.density},
              {"diameter_px", p.diameter},
              {"diameter_spread", p.diameter_spread},
              {"elongation", p.elongation},
              {"irregularity", p.irregularity},
              {"touching", p.touching},
              {"overlap", p.overlap},
              {"max_cluster", p.max_cluster},
              {"gap_px", p.gap},
              {"background", p.background},
              {"contrast", p.contrast},
              {"intensity_spread", p.intensity_spread},
              {"texture", p.texture},
              {"texture_scale_px", p.texture_scale},
              {"edge_falloff", p.edge_falloff},
              {"illumination", p.illumination},
              {"nucleus_ratio", p.nucleus_ratio},
              {"offset", p.offset},
              {"blur_px", p.blur},
              {"blur_z_slices", synth::effective_blur_z(p)},
              {"photons", p.photons},
              {"noise", p.noise},
              {"full_scale", synth::effective_full_scale(p)}};
}

void write_json_atomic(const fs::path& path, const json& j) {
  io::AtomicOutput out(path);
  {
    std::ofstream f(out.temporary_path());
    UMAMBA_CHECK(f.good(), "synth: cannot write {}", out.temporary_path().string());
    f << j.dump(2) << "\n";
    f.close();
    UMAMBA_CHECK(f.good(), "synth: writing {} failed", out.temporary_path().string());
  }
  out.commit();
}

void spacing_sidecar(const fs::path& file, const Geometry& g) {
  fs::path sidecar = file;
  sidecar.replace_extension(".json");
  write_json_atomic(sidecar, json{{"spacing", {g.spacing[0], g.spacing[1], g.spacing[2]}}});
}

// The files of one image: the image file(s) and the label file.
struct Targets {
  std::vector<fs::path> images;  // one file for neurips, one per channel for nnunet
  fs::path labels;
  fs::path instances;  // three-class labels: where the instances go
};

bool three_class(const SynthJob& job) {
  return job.layout == SynthLayout::Nnunet && job.nnunet_labels == NnunetLabels::Classes;
}

Targets targets_for(const SynthJob& job, const std::string& name) {
  Targets t;
  if (job.layout == SynthLayout::Neurips) {
    t.images.push_back(job.output / "images" / (name + ".tif"));
    t.labels = job.output / "labels" / (name + "_label.tiff");
  } else {
    for (int c = 0; c < job.params.channels; ++c)
      t.images.push_back(job.output / "imagesTr" / fmt::format("{}_{:04d}.tif", name, c));
    t.labels = job.output / "labelsTr" / (name + ".tif");
    if (three_class(job)) t.instances = job.output / "instancesTr" / (name + ".tif");
  }
  return t;
}

// Channels of `image` that go into image file f.
Image file_view(const SynthJob& job, const Image& image, size_t f) {
  if (job.layout == SynthLayout::Neurips) return image;
  return image.channel(static_cast<int64_t>(f));
}

void write_whole(const SynthJob& job, const synth::Generator& gen, const Targets& t,
                 const io::WriteOptions& options) {
  const synth::SynthResult r = gen.render();
  for (size_t f = 0; f < t.images.size(); ++f)
    io::write_image(t.images[f], file_view(job, r.image, f).contiguous(), options);
  if (three_class(job)) {
    // The organisers' recipe (boundary width 2 with spill, interior pieces below 16 px dropped).
    io::write_image(t.labels, postprocess::instances_to_classes(r.labels, {}), options);
    io::write_labels(t.instances, r.labels, options);
  } else {
    io::write_labels(t.labels, r.labels, options);
  }
}

void write_streamed(const SynthJob& job, const synth::Generator& gen, const Targets& t,
                    io::WriteOptions options) {
  const auto& p = gen.params();
  options.tile_size = 512;
  const int64_t rows = 1024;  // a multiple of the tile height
  std::vector<std::unique_ptr<io::TiffBandWriter>> writers;
  Shape file_shape = gen.image_shape();
  if (job.layout == SynthLayout::Nnunet) file_shape.c = 1;
  for (const fs::path& path : t.images)
    writers.push_back(
        std::make_unique<io::TiffBandWriter>(path, file_shape, p.dtype, gen.geometry(), options));
  io::TiffBandWriter label_writer(t.labels, gen.label_shape(), gen.label_dtype(), gen.geometry(),
                                  options);
  for (int64_t y0 = 0; y0 < p.height; y0 += rows) {
    const synth::Band band = gen.render_band(y0, std::min(p.height, y0 + rows));
    for (size_t f = 0; f < writers.size(); ++f)
      writers[f]->write_band(file_view(job, band.image, f).contiguous());
    label_writer.write_band(band.labels);
  }
  for (auto& w : writers) w->finish();
  label_writer.finish();
}

}  // namespace

std::vector<SynthImageRecord> run_synth(const SynthJob& job) {
  UMAMBA_CHECK(job.count >= 1, "synth: count = {} must be at least 1", job.count);
  UMAMBA_CHECK(!job.output.empty(), "synth: no output folder given");
  UMAMBA_CHECK(!job.prefix.empty() && job.prefix.find('/') == std::string::npos,
               "synth: prefix '{}' must be a non-empty file name part", job.prefix);
  synth::validate(job.params);

  if (job.layout == SynthLayout::Neurips) {
    fs::create_directories(job.output / "images");
    fs::create_directories(job.output / "labels");
  } else {
    fs::create_directories(job.output / "imagesTr");
    fs::create_directories(job.output / "labelsTr");
    if (three_class(job)) fs::create_directories(job.output / "instancesTr");
  }
  io::WriteOptions options;
  options.compression = job.compression;

  const int digits = std::max<int>(4, static_cast<int>(fmt::format("{}", job.count - 1).size()));
  std::vector<SynthImageRecord> records;
  json images = json::array();
  for (int64_t i = 0; i < job.count; ++i) {
    synth::SynthParams p = job.params;
    p.seed = job.params.seed + static_cast<uint64_t>(i);
    const std::string name = fmt::format("{}_{:0{}d}", job.prefix, i, digits);
    const synth::Generator gen(p);
    const Targets t = targets_for(job, name);
    const int64_t elements = gen.image_shape().elements();
    if (p.depth == 1 && elements > job.stream_pixels && !three_class(job)) {
      write_streamed(job, gen, t, options);
    } else {
      write_whole(job, gen, t, options);
    }
    if (job.layout == SynthLayout::Nnunet && p.depth > 1) {
      for (const fs::path& f : t.images) spacing_sidecar(f, gen.geometry());
      spacing_sidecar(t.labels, gen.geometry());
      if (!t.instances.empty()) spacing_sidecar(t.instances, gen.geometry());
    }
    SynthImageRecord rec;
    rec.name = name;
    rec.seed = p.seed;
    rec.cells_requested = gen.cells_requested();
    rec.cells_placed = gen.cells_placed();
    rec.cells_clustered = gen.cells_clustered();
    rec.images = t.images;
    rec.labels = t.labels;
    rec.instances = t.instances;
    log::info("synth: {} ({}, seed {}): {} cells ({} in touching clusters)", name,
              to_string(gen.image_shape()), p.seed, rec.cells_placed, rec.cells_clustered);
    images.push_back(json{{"name", name},
                          {"seed", p.seed},
                          {"cells_requested", rec.cells_requested},
                          {"cells_placed", rec.cells_placed},
                          {"cells_clustered", rec.cells_clustered}});
    records.push_back(std::move(rec));
  }

  if (job.layout == SynthLayout::Nnunet) {
    json channels = json::object();
    if (job.params.channels == 1) {
      channels["0"] = "fluorescence";
    } else {
      channels["0"] = "R";
      channels["1"] = "G";
      channels["2"] = "B";
    }
    json dataset{{"name", job.dataset_name},
                 {"channel_names", channels},
                 {"numTraining", job.count},
                 {"file_ending", ".tif"}};
    if (three_class(job)) {
      dataset["description"] =
          "Synthetic fluorescence-like cells from umamba synth; labelsTr holds the NeurIPS "
          "organisers' three classes (0 background, 1 interior, 2 boundary), instancesTr the "
          "instance labels";
      dataset["labels"] = {{"background", 0}, {"interior", 1}, {"boundary", 2}};
      dataset["label_kind"] = "three-class";
      dataset["instances_folder"] = "instancesTr";
    } else {
      dataset["description"] =
          "Synthetic fluorescence-like cells from umamba synth; labelsTr holds instance labels "
          "(0 background, 1..N per image), not semantic classes";
      dataset["labels"] = {{"background", 0}, {"cell", 1}};
      dataset["label_kind"] = "instance";
    }
    write_json_atomic(job.output / "dataset.json", dataset);
  }
  write_json_atomic(job.output / "synth.json",
                    json{{"generator", "umamba synth"},
                         {"version", build_info::kVersion},
                         {"git_revision", build_info::kGitRevision},
                         {"layout", job.layout == SynthLayout::Neurips ? "neurips" : "nnunet"},
                         {"nnunet_labels", three_class(job) ? "classes" : "instances"},
                         {"count", job.count},
                         {"first_seed", job.params.seed},
                         {"parameters", params_json(job.params)},
                         {"images", images}});
  return records;
}

}  // namespace umamba::pipeline
