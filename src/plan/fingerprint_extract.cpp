// Fingerprint extraction from files: reads each case through src/io (TBB over cases) and pools
// the per-case analyses in case order; see fingerprint.h for what is computed.
#include <tbb/parallel_for.h>

#include <cmath>

#include "core/error.h"
#include "core/log.h"
#include "io/image_io.h"
#include "plan/dataset.h"
#include "plan/fingerprint.h"

namespace umamba::plan {

namespace {

// All channel files of a case as one [C,Z,Y,X] image (channels in file order).
Image read_case_image(const Case& c, int64_t want_channels) {
  std::vector<Image> parts;
  int64_t channels = 0;
  for (const auto& p : c.images) {
    parts.push_back(io::read_image(p));
    channels += parts.back().channels();
    const Shape& a = parts.front().shape();
    const Shape& b = parts.back().shape();
    if (a.z != b.z || a.y != b.y || a.x != b.x) {
      throw FileError(p.string(), "shape " + to_string(b) +
                                      " differs from the case's first image " + to_string(a));
    }
  }
  Image first = parts.front();
  if (parts.size() == 1 && want_channels <= 0) return first;
  if (parts.size() == 1) {
    // NeurIPS layout: grey images replicated to RGB, extra channels (alpha) dropped.
    if (first.channels() == want_channels) return first;
    Shape s = first.shape();
    s.c = want_channels;
    Image out = Image::zeros(first.dtype(), s, first.geometry());
    for (int64_t ch = 0; ch < want_channels; ++ch) {
      const int64_t src = first.channels() == 1 ? 0 : ch;
      if (src >= first.channels()) {
        throw FileError(c.images.front().string(), "has " + std::to_string(first.channels()) +
                                                       " channels, " +
                                                       std::to_string(want_channels) + " expected");
      }
      out.channel(ch).copy_from(first.channel(src));
    }
    return out;
  }
  Shape s = first.shape();
  s.c = channels;
  Image out = Image::zeros(first.dtype(), s, first.geometry());
  int64_t at = 0;
  for (const auto& part : parts) {
    out.channels(at, part.channels()).copy_from(part);
    at += part.channels();
  }
  return out;
}

}  // namespace

Fingerprint extract_fingerprint(DatasetDescription& dataset, const FingerprintOptions& options) {
  const size_t n = dataset.cases.size();
  UMAMBA_CHECK(n > 0, "dataset {} has no case", dataset.name);
  int64_t want_channels = 0;
  if (dataset.layout == DatasetLayout::NeurIPSCells) {
    bool any_rgb = false;
    for (const auto& c : dataset.cases) {
      const auto info = io::open_image(c.images.front())->info();
      if (info.shape.c >= 3) any_rgb = true;
      if (info.shape.c == 2) {
        throw FileError(c.images.front().string(), "has 2 channels (grey or RGB expected)");
      }
    }
    want_channels = any_rgb ? 3 : 1;
    dataset.channel_names =
        any_rgb ? std::vector<std::string>{"R", "G", "B"} : std::vector<std::string>{"grey"};
    dataset.replicate_grey_to_rgb = any_rgb;
  }
  const auto num_samples =
      static_cast<uint64_t>(std::floor(options.total_foreground_samples / static_cast<double>(n)));
  log::info("fingerprint: {} cases, {} foreground samples per case and channel", n, num_samples);

  std::vector<CaseAnalysis> results(n);
  tbb::parallel_for(size_t{0}, n, [&](size_t i) {
    const Case& c = dataset.cases[i];
    Image image = read_case_image(c, want_channels);
    Image labels = io::read_image(c.label);
    if (labels.channels() != 1) {
      throw FileError(c.label.string(), "label image has " + std::to_string(labels.channels()) +
                                            " channels, 1 expected");
    }
    if (labels.depth() != image.depth() || labels.height() != image.height() ||
        labels.width() != image.width()) {
      throw FileError(c.label.string(), "label shape " + to_string(labels.shape()) +
                                            " does not match the image " +
                                            to_string(image.shape()));
    }
    const auto& sp = image.geometry().spacing;
    // 2D images: nnU-Net's NaturalImage2DIO gives the slice axis the spacing 999.
    const std::array<double, 3> spacing = image.depth() == 1
                                              ? std::array<double, 3>{999.0, sp[1], sp[2]}
                                              : std::array<double, 3>{sp[0], sp[1], sp[2]};
    results[i] = analyze_case(image, labels, spacing, num_samples);
  });
  if (dataset.layout != DatasetLayout::NeurIPSCells) {
    for (size_t i = 0; i < n; ++i) {
      if (results[i].samples.size() != dataset.channel_names.size()) {
        throw FileError(
            dataset.cases[i].images.front().string(),
            "case " + dataset.cases[i].id + " has " + std::to_string(results[i].samples.size()) +
                " channels, dataset.json names " + std::to_string(dataset.channel_names.size()));
      }
    }
  }
  return aggregate_fingerprint(results);
}

}  // namespace umamba::plan
