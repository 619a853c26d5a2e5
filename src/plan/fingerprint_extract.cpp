// Fingerprint extraction from files: reads each case through src/io (TBB over cases) and pools
// the per-case analyses in case order; see fingerprint.h for what is computed.
#include <tbb/parallel_for.h>

#include <cmath>

#include "core/error.h"
#include "core/log.h"
#include "io/image_io.h"
#include "plan/case_image.h"
#include "plan/dataset.h"
#include "plan/fingerprint.h"

namespace umamba::plan {

Fingerprint extract_fingerprint(DatasetDescription& dataset, const FingerprintOptions& options) {
  const size_t n = dataset.cases.size();
  UMAMBA_CHECK(n > 0, "dataset {} has no case", dataset.name);
  // NeurIPS layout: every case read with the dataset's channels (grey replicated to RGB when any
  // image is RGB); nnU-Net raw: the channel files as they are.
  resolve_neurips_channels(dataset);
  const int64_t want_channels = dataset.layout == DatasetLayout::NeurIPSCells
                                    ? static_cast<int64_t>(dataset.channel_names.size())
                                    : 0;
  const auto num_samples =
      static_cast<uint64_t>(std::floor(options.total_foreground_samples / static_cast<double>(n)));
  log::info("fingerprint: {} cases, {} foreground samples per case and channel", n, num_samples);

  std::vector<CaseAnalysis> results(n);
  tbb::parallel_for(size_t{0}, n, [&](size_t i) {
    const Case& c = dataset.cases[i];
    Image image = read_case_image(c, want_channels, dataset.replicate_grey_to_rgb);
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
