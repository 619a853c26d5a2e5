// `umamba convert` batches (see convert.h).
#include "pipeline/convert.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/build_info.h"
#include "core/error.h"
#include "core/log.h"
#include "io/atomic_file.h"
#include "io/image_io.h"
#include "postprocess/measure.h"
#include "postprocess/outlines.h"

namespace umamba::pipeline {

namespace fs = std::filesystem;

namespace {

// "a/b/cell.nii.gz" -> ("cell", ".nii.gz"); "x.tif" -> ("x", ".tif").
std::pair<std::string, std::string> split_name(const fs::path& p) {
  const std::string name = p.filename().string();
  for (const char* double_ext : {".nii.gz", ".ome.tif", ".ome.tiff"}) {
    const std::string e = double_ext;
    if (name.size() > e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0)
      return {name.substr(0, name.size() - e.size()), e};
  }
  return {p.stem().string(), p.extension().string()};
}

std::string strip_label_suffix(const std::string& stem) {
  for (const char* s : {"_labels", "_label", "_mask"}) {
    const std::string suffix = s;
    if (stem.size() > suffix.size() &&
        stem.compare(stem.size() - suffix.size(), suffix.size(), suffix) == 0)
      return stem.substr(0, stem.size() - suffix.size());
  }
  return stem;
}

bool is_nifti(const std::string& ext) {
  return ext == ".nii" || ext == ".nii.gz";
}

void write_text(const fs::path& path, const std::string& text, bool overwrite) {
  io::AtomicOutput out(path, overwrite);
  {
    std::ofstream f(out.temporary_path(), std::ios::binary);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.close();
    if (!f) fail_file(path.string(), "cannot write");
  }
  out.commit();
}

const char* operation_name(ConvertOperation op) {
  switch (op) {
    case ConvertOperation::ToClasses:
      return "to-classes";
    case ConvertOperation::ToInstances:
      return "to-instances";
    case ConvertOperation::Measure:
      return "measure";
  }
  return "?";
}

nlohmann::json parameters(const ConvertOptions& o) {
  nlohmann::json p;
  if (o.operation == ConvertOperation::ToClasses) {
    p["boundary_width"] = o.classes.boundary_width;
    p["spill"] = o.classes.spill;
    p["min_interior_size"] = o.classes.min_interior_size;
  } else if (o.operation == ConvertOperation::ToInstances) {
    const auto& i = o.instances;
    p["mode"] = i.mode == postprocess::InstanceMode::Plain ? "plain" : "reclaim";
    p["connectivity"] = i.connectivity;
    p["min_size"] = i.min_size;
    if (i.mode == postprocess::InstanceMode::Reclaim) {
      p["max_growth"] = i.max_growth;
      p["trim_spill"] = i.trim_spill;
      p["min_boundary_only_size"] = i.min_boundary_only_size;
      p["fill_holes"] = i.fill_holes;
      p["max_hole_size"] = i.max_hole_size;
    }
  } else {
    p["images"] = o.images.string();
    p["geojson"] = o.geojson;
    p["overlay"] = o.overlay;
  }
  p["suffix"] = o.suffix;
  p["extension"] = o.extension;
  return p;
}

class Converter {
 public:
  explicit Converter(const ConvertOptions& o) : o_(o) {
    if (o.operation == ConvertOperation::Measure && !o.images.empty()) {
      if (!fs::is_directory(o.images))
        fail("convert measure: --images {} is not a folder", o.images.string());
      for (const auto& entry : fs::directory_iterator(o.images)) {
        if (!entry.is_regular_file() || entry.path().filename().string().starts_with(".")) continue;
        if (!io::is_supported_image(entry.path())) continue;
        images_.emplace(split_name(entry.path()).first, entry.path());
      }
    }
  }

  // Output path of `input` with `tail` (suffix + extension) under the output folder.
  fs::path output_for(const fs::path& input, const std::string& tail) const {
    return o_.output / (split_name(input).first + tail);
  }

  void run(const fs::path& input, const fs::path& single_output, ConvertFileResult& r) {
    if (!fs::exists(input)) fail_file(input.string(), "no such file");
    const auto [stem, ext] = split_name(input);
    const std::string out_ext = o_.extension.empty() ? ext : o_.extension;
    if (o_.operation == ConvertOperation::Measure) {
      measure(input, r);
      return;
    }
    const fs::path out =
        single_output.empty() ? o_.output / (stem + o_.suffix + out_ext) : single_output;
    std::error_code ec;
    if (fs::exists(out) && fs::equivalent(out, input, ec))
      fail_file(input.string(), "the output would replace the input; choose another -o folder");
    if (!o_.overwrite && fs::exists(out)) fail_file(out.string(), "exists (overwriting is off)");
    io::WriteOptions w;
    w.overwrite = o_.overwrite;
    if (is_nifti(ext) && is_nifti(split_name(out).second)) w.reference = input;
    Image image = read(input);
    if (o_.operation == ConvertOperation::ToClasses) {
      const Image classes = postprocess::instances_to_classes(image, o_.classes);
      io::write_image(out, classes, w);
    } else {
      const Image labels = postprocess::classes_to_instances(image, o_.instances, &r.objects);
      io::write_labels(out, labels, w);
    }
    r.outputs.push_back(out);
  }

 private:
  static Image read(const fs::path& input) {
    try {
      return io::read_image(input);
    } catch (const FileError&) {
      throw;
    } catch (const std::exception& e) {
      throw FileError(input.string(), e.what());
    }
  }

  void measure(const fs::path& input, ConvertFileResult& r) {
    const Image labels = read(input);
    const std::string stem = split_name(input).first;
    Image intensity;
    if (!images_.empty()) {
      auto it = images_.find(stem);
      if (it == images_.end()) it = images_.find(strip_label_suffix(stem));
      if (it == images_.end()) {
        log::warn("{}: no image named {} or {} in {}; measuring without intensities",
                  input.string(), stem, strip_label_suffix(stem), o_.images.string());
      } else {
        intensity = read(it->second);
      }
    }
    postprocess::RegionTable table;
    try {
      table = postprocess::region_properties(labels, intensity);
    } catch (const Error& e) {
      fail_file(input.string(), "{}", e.what());
    }
    r.objects = static_cast<uint32_t>(table.rows.size());
    const fs::path csv = output_for(input, o_.suffix + "_objects.csv");
    write_text(csv, postprocess::to_csv(table), o_.overwrite);
    r.outputs.push_back(csv);
    if (labels.depth() != 1) return;  // outlines and overlays are 2D
    if (o_.geojson) {
      const fs::path geojson = output_for(input, o_.suffix + ".geojson");
      write_text(geojson, postprocess::outlines_geojson(postprocess::trace_outlines(labels)),
                 o_.overwrite);
      r.outputs.push_back(geojson);
    }
    if (o_.overlay && !intensity.empty()) {
      const fs::path png = output_for(input, o_.suffix + "_overlay.png");
      if (!io::is_supported_image(png)) {
        log::warn("{}: overlay skipped: this build writes no PNG (UMAMBA_OPENCV=OFF)",
                  input.string());
        return;
      }
      io::WriteOptions w;
      w.overwrite = o_.overwrite;
      io::write_image(png, postprocess::overlay_outlines(intensity, labels), w);
      r.outputs.push_back(png);
    }
  }

  const ConvertOptions& o_;
  std::map<std::string, fs::path> images_;
};

}  // namespace

int64_t ConvertSummary::succeeded() const {
  return std::count_if(files.begin(), files.end(), [](const auto& f) { return f.ok; });
}
int64_t ConvertSummary::failed() const {
  return static_cast<int64_t>(files.size()) - succeeded();
}

std::vector<fs::path> expand_inputs(const std::vector<fs::path>& inputs) {
  std::vector<fs::path> out;
  for (const fs::path& in : inputs) {
    if (!fs::is_directory(in)) {
      out.push_back(in);
      continue;
    }
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(in)) {
      const fs::path& p = entry.path();
      if (!entry.is_regular_file() || p.filename().string().starts_with(".")) continue;
      if (io::is_supported_image(p)) files.push_back(p);
    }
    std::sort(files.begin(), files.end());
    out.insert(out.end(), files.begin(), files.end());
  }
  return out;
}

ConvertSummary run_convert(const ConvertOptions& o) {
  UMAMBA_CHECK(!o.inputs.empty(), "convert: no inputs given");
  UMAMBA_CHECK(!o.output.empty(), "convert: no output given (-o)");
  const std::vector<fs::path> files = expand_inputs(o.inputs);
  UMAMBA_CHECK(!files.empty(), "convert: the input folders hold no supported images");
  // One input file and an output with an image extension: write exactly that file.
  const bool single = o.operation != ConvertOperation::Measure && o.inputs.size() == 1 &&
                      !fs::is_directory(o.inputs[0]) && !fs::is_directory(o.output) &&
                      io::is_supported_image(o.output);
  const fs::path folder = single ? o.output.parent_path() : o.output;
  if (!folder.empty()) {
    std::error_code ec;
    fs::create_directories(folder, ec);
    if (ec) fail("convert: cannot create the output folder {}: {}", folder.string(), ec.message());
  }
  Converter converter(o);
  ConvertSummary summary;
  for (const fs::path& input : files) {
    ConvertFileResult r;
    r.input = input;
    try {
      converter.run(input, single ? o.output : fs::path(), r);
      r.ok = true;
      log::info("{} -> {}{}", input.string(),
                r.outputs.empty() ? std::string("-") : r.outputs.front().string(),
                o.operation == ConvertOperation::ToClasses
                    ? std::string()
                    : fmt::format(" ({} objects)", r.objects));
    } catch (const std::exception& e) {
      r.ok = false;
      r.error = dynamic_cast<const FileError*>(&e) != nullptr
                    ? e.what()
                    : fmt::format("{}: {}", input.string(), e.what());
      log::error("{}", r.error);
    }
    summary.files.push_back(std::move(r));
  }
  if (!single) {
    nlohmann::json manifest;
    manifest["tool"] =
        fmt::format("umamba {} ({})", build_info::kVersion, build_info::kGitRevision);
    manifest["operation"] = operation_name(o.operation);
    manifest["parameters"] = parameters(o);
    for (const auto& f : summary.files) {
      nlohmann::json j;
      j["input"] = f.input.string();
      j["ok"] = f.ok;
      if (f.ok) {
        j["outputs"] = nlohmann::json::array();
        for (const auto& p : f.outputs) j["outputs"].push_back(p.filename().string());
        if (o.operation != ConvertOperation::ToClasses) j["objects"] = f.objects;
      } else {
        j["error"] = f.error;
      }
      manifest["files"].push_back(j);
    }
    try {
      write_text(folder / "umamba_convert.json", manifest.dump(2) + "\n", true);
    } catch (const std::exception& e) {
      log::warn("convert: cannot write the run record: {}", e.what());
    }
  }
  return summary;
}

std::string format_convert_summary(const ConvertSummary& s) {
  std::string out = fmt::format("{} file(s) converted, {} failed\n", s.succeeded(), s.failed());
  for (const auto& f : s.files)
    if (!f.ok) out += fmt::format("  failed: {}\n", f.error);
  return out;
}

}  // namespace umamba::pipeline
