// `umamba synth`: synthetic fluorescence-like cell images with instance labels, written as a
// NeurIPS-layout or nnU-Net-layout dataset (src/pipeline/synth.h); and `umamba bench synth`,
// which times the generator without writing.
#include <fmt/core.h>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>

#include "cli/bench.h"
#include "cli/commands.h"
#include "core/memory.h"
#include "pipeline/synth.h"

namespace umamba::cli {
namespace {

// The generator's parameters as flags; shared by `synth` and `bench synth`.
struct SynthFlags {
  synth::SynthParams params;
  std::string size = "512x512";
  std::string dtype = "u16";
};

void add_generator_flags(CLI::App* cmd, SynthFlags& f) {
  auto& p = f.params;
  auto opt = [&](const char* name, auto& value, const char* help, const char* env) {
    return cmd->add_option(name, value, help)->capture_default_str()->envname(env);
  };
  opt("--size", f.size, "Image size: YxX (2D) or ZxYxX (3D), in pixels", "UMAMBA_SYNTH_SIZE");
  opt("--seed", p.seed, "Seed of the first image (image i uses seed + i)", "UMAMBA_SYNTH_SEED");
  opt("--cells", p.cells, "Cells per image (0: from --density)", "UMAMBA_SYNTH_CELLS");
  opt("--density", p.density, "Fraction of the image covered by cells (when --cells is 0)",
      "UMAMBA_SYNTH_DENSITY");
  opt("--cell-diameter", p.diameter, "Mean equivalent cell diameter, XY pixels",
      "UMAMBA_SYNTH_CELL_DIAMETER");
  opt("--diameter-spread", p.diameter_spread, "Log-normal sigma of the diameters (cut at 2 sigma)",
      "UMAMBA_SYNTH_DIAMETER_SPREAD");
  opt("--elongation", p.elongation, "Largest axis ratio of a cell (1: round)",
      "UMAMBA_SYNTH_ELONGATION");
  opt("--irregularity", p.irregularity, "Boundary perturbation, fraction of the radius (< 0.45)",
      "UMAMBA_SYNTH_IRREGULARITY");
  opt("--touching", p.touching, "Fraction of cells in contact with another cell",
      "UMAMBA_SYNTH_TOUCHING");
  opt("--overlap", p.overlap, "Overlap depth of touching cells, fraction of their radii",
      "UMAMBA_SYNTH_OVERLAP");
  opt("--max-cluster", p.max_cluster, "Largest cluster of touching cells",
      "UMAMBA_SYNTH_MAX_CLUSTER");
  opt("--gap", p.gap, "Minimum gap between cells that do not touch, pixels", "UMAMBA_SYNTH_GAP");
  opt("--background", p.background, "Background level, fraction of full scale",
      "UMAMBA_SYNTH_BACKGROUND");
  opt("--contrast", p.contrast, "Mean cell level above the background, fraction of full scale",
      "UMAMBA_SYNTH_CONTRAST");
  opt("--intensity-spread", p.intensity_spread, "Coefficient of variation of cell brightness",
      "UMAMBA_SYNTH_INTENSITY_SPREAD");
  opt("--texture", p.texture, "Interior texture amplitude (relative)", "UMAMBA_SYNTH_TEXTURE");
  opt("--texture-scale", p.texture_scale, "Texture grain, pixels (0: diameter / 4)",
      "UMAMBA_SYNTH_TEXTURE_SCALE");
  opt("--edge-falloff", p.edge_falloff, "Dimming towards the cell rim (0: flat)",
      "UMAMBA_SYNTH_EDGE_FALLOFF");
  opt("--illumination", p.illumination, "Uneven illumination amplitude (relative)",
      "UMAMBA_SYNTH_ILLUMINATION");
  opt("--offset", p.offset, "Camera offset added after noise, fraction of full scale",
      "UMAMBA_SYNTH_OFFSET");
  opt("--blur", p.blur, "Gaussian PSF sigma in X/Y, pixels (0: none)", "UMAMBA_SYNTH_BLUR");
  opt("--blur-z", p.blur_z, "PSF sigma along Z, slices (negative: 2.5 x blur in um)",
      "UMAMBA_SYNTH_BLUR_Z");
  opt("--photons", p.photons, "Photons at full scale for Poisson shot noise (0: none)",
      "UMAMBA_SYNTH_PHOTONS");
  opt("--noise", p.noise, "Gaussian read noise sigma, fraction of full scale",
      "UMAMBA_SYNTH_NOISE");
  opt("--spacing", p.spacing_xy, "Pixel size in X and Y, um", "UMAMBA_SYNTH_SPACING");
  opt("--spacing-z", p.spacing_z, "Slice spacing in 3D, um", "UMAMBA_SYNTH_SPACING_Z");
  opt("--dtype", f.dtype, "Image type: u8, u16 or f32", "UMAMBA_SYNTH_DTYPE")
      ->check(CLI::IsMember({"u8", "u16", "f32"}));
  opt("--channels", p.channels, "1: grey nuclei; 3: RGB (R cytoplasm, G weak, B nucleus)",
      "UMAMBA_SYNTH_CHANNELS")
      ->check(CLI::IsMember({1, 3}));
  opt("--nucleus-ratio", p.nucleus_ratio, "RGB: nucleus size relative to the cell",
      "UMAMBA_SYNTH_NUCLEUS_RATIO");
  opt("--full-scale", p.full_scale, "Output value of intensity 1.0 (0: 255 u8, 4095 u16, 1 f32)",
      "UMAMBA_SYNTH_FULL_SCALE");
}

// Resolves the string flags into the parameters.
synth::SynthParams resolve(const SynthFlags& f) {
  synth::SynthParams p = f.params;
  pipeline::parse_synth_size(f.size, p);
  p.dtype = dtype_from_name(f.dtype);
  synth::validate(p);
  return p;
}

void add_synth_command(CLI::App& app) {
  struct Options {
    SynthFlags flags;
    std::string output;
    int64_t count = 1;
    std::string layout = "neurips";
    std::string nnunet_labels = "instances";
    std::string prefix = "synth";
    std::string dataset_name = "umamba_synth";
    std::string compression = "deflate";
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "synth",
      "Generate synthetic fluorescence-like cell images with instance labels (2D or 3D), as a "
      "NeurIPS-layout or nnU-Net-layout dataset");
  cmd->add_option("-o,--output", o->output, "Output folder (created)")
      ->required()
      ->envname("UMAMBA_SYNTH_OUTPUT");
  cmd->add_option("--count", o->count, "Number of images")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_SYNTH_COUNT");
  cmd->add_option("--layout", o->layout,
                  "neurips: images/<name>.tif + labels/<name>_label.tiff; nnunet: "
                  "imagesTr/<name>_0000.tif + labelsTr/<name>.tif + dataset.json")
      ->capture_default_str()
      ->check(CLI::IsMember({"neurips", "nnunet"}))
      ->envname("UMAMBA_SYNTH_LAYOUT");
  cmd->add_option("--nnunet-labels", o->nnunet_labels,
                  "nnunet layout: instances (labelsTr = instance labels) or classes (labelsTr = "
                  "0 background / 1 interior / 2 boundary, the organisers' recipe; instances in "
                  "instancesTr)")
      ->capture_default_str()
      ->check(CLI::IsMember({"instances", "classes"}))
      ->envname("UMAMBA_SYNTH_NNUNET_LABELS");
  cmd->add_option("--prefix", o->prefix, "File name prefix: <prefix>_0000, <prefix>_0001, ...")
      ->capture_default_str()
      ->envname("UMAMBA_SYNTH_PREFIX");
  cmd->add_option("--dataset-name", o->dataset_name, "nnunet: the name in dataset.json")
      ->capture_default_str()
      ->envname("UMAMBA_SYNTH_DATASET_NAME");
  cmd->add_option("--compression", o->compression, "TIFF compression: none, deflate, zstd, lzw")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "deflate", "zstd", "lzw"}))
      ->envname("UMAMBA_SYNTH_COMPRESSION");
  add_generator_flags(cmd, o->flags);
  cmd->callback([o] {
    pipeline::SynthJob job;
    job.output = o->output;
    job.count = o->count;
    job.params = resolve(o->flags);
    job.layout = pipeline::synth_layout_from_name(o->layout);
    job.nnunet_labels = pipeline::nnunet_labels_from_name(o->nnunet_labels);
    job.prefix = o->prefix;
    job.dataset_name = o->dataset_name;
    job.compression = io::compression_from_name(o->compression);
    const auto records = pipeline::run_synth(job);
    int64_t cells = 0;
    for (const auto& r : records) cells += r.cells_placed;
    fmt::print("umamba synth: wrote {} image{} with {} cells to {}\n", records.size(),
               records.size() == 1 ? "" : "s", cells, o->output);
  });
}

// `umamba bench synth`: generation time (placement and rendering, no file writing) with all
// threads, against the same generation on one thread in the same run.
void add_synth_bench(CLI::App& bench) {
  struct Options {
    SynthFlags flags;
    bool baseline = true;
  };
  auto o = std::make_shared<Options>();
  o->flags.size = "10000x10000";
  o->flags.params.cells = 50000;
  o->flags.params.diameter = 10;
  CLI::App* cmd = bench.add_subcommand(
      "synth", "Time `umamba synth` generation (no writing): all threads vs one thread");
  cmd->add_flag("--baseline,!--no-baseline", o->baseline,
                "Also time the single-thread baseline in the same run")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_SYNTH_BASELINE");
  add_generator_flags(cmd, o->flags);
  cmd->callback([o] {
    const synth::SynthParams p = resolve(o->flags);
    using clock = std::chrono::steady_clock;
    auto run = [&](const char* what, int threads) {
      double place = 0, render = 0;
      int64_t placed = 0;
      tbb::task_arena arena(threads);
      arena.execute([&] {
        const auto t0 = clock::now();
        const synth::Generator gen(p);
        const auto t1 = clock::now();
        const synth::SynthResult r = gen.render();
        const auto t2 = clock::now();
        place = std::chrono::duration<double>(t1 - t0).count();
        render = std::chrono::duration<double>(t2 - t1).count();
        placed = r.cells_placed;
      });
      const double mpx = static_cast<double>(p.depth * p.height * p.width) / 1e6;
      fmt::print(
          "{:<10} threads {:>3}  placement {:7.3f} s  render {:7.3f} s  total {:7.3f} s  "
          "{:8.1f} Mpx/s  cells {}\n",
          what, threads, place, render, place + render, mpx / (place + render), placed);
      return place + render;
    };
    // The arena's size, bounded by --threads (a tbb::global_control set in main).
    const int threads = static_cast<int>(std::min<size_t>(
        static_cast<size_t>(tbb::this_task_arena::max_concurrency()),
        tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism)));
    fmt::print(
        "umamba bench synth: {}x{}x{} {} x{} channel(s), {} cells requested, diameter {} px\n",
        p.depth, p.height, p.width, dtype_name(p.dtype), p.channels,
        p.cells > 0 ? p.cells : synth::cells_for_density(p), p.diameter);
    const double all = run("parallel", threads);
    if (o->baseline && threads > 1) {
      const double one = run("baseline", 1);
      fmt::print("speed-up over one thread: {:.2f}x on {} threads\n", one / all, threads);
    }
    fmt::print("peak resident memory: {:.0f} MiB\n",
               static_cast<double>(peak_resident_bytes()) / (1024.0 * 1024.0));
  });
}

}  // namespace

UMAMBA_REGISTER_COMMAND(150, add_synth_command);
UMAMBA_REGISTER_BENCH(add_synth_bench);

}  // namespace umamba::cli
