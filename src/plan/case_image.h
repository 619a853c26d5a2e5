// A case's image as the planner and the trainer both read it: the channel files of an nnU-Net raw
// case stacked in order; for the NeurIPS cell layout, one file per case whose channels follow the
// dataset (3 when any image is RGB, grey images replicated to RGB and alpha dropped; else 1).
#pragma once

#include <cstdint>

#include "core/image.h"
#include "plan/dataset.h"

namespace umamba::plan {

// NeurIPS layout without channel names yet: ["R", "G", "B"] and replicate_grey_to_rgb when any
// case's image has 3 or more channels, else ["grey"]. Other layouts and named channels are left
// as they are. Throws FileError for an image with 2 channels (neither grey nor RGB).
void resolve_neurips_channels(DatasetDescription& dataset);

// One case's image as [C, Z, Y, X] with `want_channels` channels (0: whatever the files hold).
// A single file with other channels than wanted: its first `want_channels` channels, or its one
// grey channel repeated when `replicate_grey`. Throws FileError naming the file at fault (shapes
// that differ between a case's files, too few channels, a channel count other than wanted).
Image read_case_image(const Case& c, int64_t want_channels, bool replicate_grey);

}  // namespace umamba::plan
