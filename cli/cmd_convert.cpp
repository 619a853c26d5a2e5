// `umamba convert`: instance labels <-> three-class maps, and per-object measurements, over files
// and folders (logic in src/pipeline/convert.{h,cpp}, algorithms in postprocess/).
#include <fmt/core.h>

#include <memory>

#include "cli/commands.h"
#include "pipeline/convert.h"

namespace umamba::cli {

namespace {

struct ConvertFlags {
  std::vector<std::string> inputs;
  std::string output, suffix, extension;
  bool no_overwrite = false;
  // to-classes
  int boundary_width = 2;
  bool no_spill = false;
  int64_t min_interior = 16;
  // to-instances
  std::string mode = "reclaim";
  int connectivity = 0;
  int64_t min_size = 0, max_growth = 0, min_boundary_size = 8, max_hole = 0;
  bool no_trim = false, no_fill_holes = false;
  // measure
  std::string images;
  bool no_geojson = false, no_overlay = false;
};

void add_io_flags(CLI::App* cmd, ConvertFlags& f, const std::string& env) {
  cmd->add_option("inputs", f.inputs, "Input images or folders of images")
      ->required()
      ->envname("UMAMBA_CONVERT_INPUTS");
  cmd->add_option("-o,--output", f.output,
                  "Output folder (or the output file, for a single input file)")
      ->required()
      ->envname("UMAMBA_CONVERT_OUTPUT");
  cmd->add_option("--suffix", f.suffix, "Appended to each output's file stem")
      ->capture_default_str()
      ->envname("UMAMBA_CONVERT_" + env + "_SUFFIX");
  cmd->add_flag("--no-overwrite", f.no_overwrite, "Fail a file whose output already exists")
      ->envname("UMAMBA_CONVERT_NO_OVERWRITE");
}

void run(pipeline::ConvertOptions o, const ConvertFlags& f) {
  for (const auto& in : f.inputs) o.inputs.emplace_back(in);
  o.output = f.output;
  o.suffix = f.suffix;
  o.extension = f.extension;
  o.overwrite = !f.no_overwrite;
  const auto summary = pipeline::run_convert(o);
  fmt::print("{}", pipeline::format_convert_summary(summary));
  if (summary.failed() > 0) throw CLI::RuntimeError(1);
}

void add_convert_command(CLI::App& app) {
  auto f = std::make_shared<ConvertFlags>();
  CLI::App* convert = app.add_subcommand(
      "convert",
      "Instance labels <-> three-class maps (background/interior/boundary); measurements");
  convert->require_subcommand(1);

  CLI::App* classes = convert->add_subcommand(
      "to-classes",
      "Instance labels -> 0 background, 1 interior, 2 boundary (the NeurIPS-CellSeg recipe)");
  add_io_flags(classes, *f, "CLASSES");
  classes
      ->add_option("--boundary-width", f->boundary_width,
                   "Boundary band: 1 = skimage find_boundaries(mode='inner'); each further unit "
                   "one more cross dilation (2 = the organisers' recipe)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64))
      ->envname("UMAMBA_CONVERT_BOUNDARY_WIDTH");
  classes
      ->add_flag("--no-spill", f->no_spill,
                 "Keep the boundary band inside the instances (the recipe lets the dilation "
                 "reach one pixel outside)")
      ->envname("UMAMBA_CONVERT_NO_SPILL");
  classes
      ->add_option("--min-interior", f->min_interior,
                   "Interior pieces smaller than this (pixels, 4-/6-connected) become background")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_CONVERT_MIN_INTERIOR");
  classes
      ->add_option("--ext", f->extension,
                   "Output extension (.tif, .png, .nii.gz); empty: the input's")
      ->capture_default_str()
      ->envname("UMAMBA_CONVERT_CLASSES_EXT");
  classes->callback([f] {
    pipeline::ConvertOptions o;
    o.operation = pipeline::ConvertOperation::ToClasses;
    o.classes.boundary_width = f->boundary_width;
    o.classes.spill = !f->no_spill;
    o.classes.min_interior_size = f->min_interior;
    run(o, *f);
  });

  CLI::App* instances = convert->add_subcommand(
      "to-instances",
      "Three-class maps or class probabilities [3,Z,Y,X] -> instance labels (uint16/uint32)");
  add_io_flags(instances, *f, "INSTANCES");
  instances
      ->add_option("--mode", f->mode,
                   "reclaim: interior seeds grow back over the boundary class, boundary-only "
                   "cells kept; plain: components of the interior only (the paper)")
      ->capture_default_str()
      ->check(CLI::IsMember({"reclaim", "plain"}))
      ->envname("UMAMBA_CONVERT_MODE");
  instances
      ->add_option("--connectivity", f->connectivity,
                   "4 or 8 (2D), 6, 18 or 26 (3D); 0 = full (8 or 26)")
      ->capture_default_str()
      ->check(CLI::IsMember({0, 4, 6, 8, 18, 26}))
      ->envname("UMAMBA_CONVERT_CONNECTIVITY");
  instances->add_option("--min-size", f->min_size, "Remove instances smaller than this (pixels)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_CONVERT_MIN_SIZE");
  instances
      ->add_option("--max-growth", f->max_growth,
                   "reclaim: growth steps into the boundary class (0 = unlimited)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_CONVERT_MAX_GROWTH");
  instances
      ->add_option("--min-boundary-size", f->min_boundary_size,
                   "reclaim: keep boundary-only instances from this size (pixels)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_CONVERT_MIN_BOUNDARY_SIZE");
  instances
      ->add_flag("--no-trim", f->no_trim,
                 "reclaim: keep the outer boundary pixels next to background (use for maps made "
                 "with --no-spill)")
      ->envname("UMAMBA_CONVERT_NO_TRIM");
  instances->add_flag("--no-fill-holes", f->no_fill_holes, "reclaim: leave holes open")
      ->envname("UMAMBA_CONVERT_NO_FILL_HOLES");
  instances->add_option("--max-hole", f->max_hole, "reclaim: largest hole filled (pixels, 0 = any)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_CONVERT_MAX_HOLE");
  instances
      ->add_option("--ext", f->extension,
                   "Output extension (.tif, .tiff, .png, .nii.gz); empty: the input's")
      ->capture_default_str()
      ->envname("UMAMBA_CONVERT_INSTANCES_EXT");
  instances->callback([f] {
    pipeline::ConvertOptions o;
    o.operation = pipeline::ConvertOperation::ToInstances;
    auto& i = o.instances;
    i.mode = postprocess::instance_mode_from_name(f->mode);
    i.connectivity = f->connectivity;
    i.min_size = f->min_size;
    i.max_growth = f->max_growth;
    i.min_boundary_only_size = f->min_boundary_size;
    i.trim_spill = !f->no_trim;
    i.fill_holes = !f->no_fill_holes;
    i.max_hole_size = f->max_hole;
    i.threads = 0;
    run(o, *f);
  });

  CLI::App* measure = convert->add_subcommand(
      "measure",
      "Label images -> per-object CSV (regionprops_table columns), GeoJSON outlines (2D) and "
      "outline overlays");
  add_io_flags(measure, *f, "MEASURE");
  measure
      ->add_option("--images", f->images,
                   "Folder of intensity images paired by name (<stem>, or <stem> without "
                   "_label/_labels/_mask) for intensity columns and overlays")
      ->envname("UMAMBA_CONVERT_IMAGES");
  measure->add_flag("--no-geojson", f->no_geojson, "Skip the GeoJSON outlines")
      ->envname("UMAMBA_CONVERT_NO_GEOJSON");
  measure->add_flag("--no-overlay", f->no_overlay, "Skip the overlay PNGs")
      ->envname("UMAMBA_CONVERT_NO_OVERLAY");
  measure->callback([f] {
    pipeline::ConvertOptions o;
    o.operation = pipeline::ConvertOperation::Measure;
    o.images = f->images;
    o.geojson = !f->no_geojson;
    o.overlay = !f->no_overlay;
    run(o, *f);
  });
}

}  // namespace

UMAMBA_REGISTER_COMMAND(250, add_convert_command);

}  // namespace umamba::cli
