// A case's image with the layout's channel rules (see case_image.h).
#include "plan/case_image.h"

#include <string>
#include <vector>

#include "core/error.h"
#include "io/image_io.h"

namespace umamba::plan {

void resolve_neurips_channels(DatasetDescription& d) {
  if (d.layout != DatasetLayout::NeurIPSCells || !d.channel_names.empty()) return;
  bool any_rgb = false;
  for (const auto& c : d.cases) {
    const auto info = io::open_image(c.images.front())->info();
    if (info.shape.c >= 3) any_rgb = true;
    if (info.shape.c == 2) {
      fail_file(c.images.front().string(), "has 2 channels (grey or RGB expected)");
    }
  }
  d.channel_names =
      any_rgb ? std::vector<std::string>{"R", "G", "B"} : std::vector<std::string>{"grey"};
  d.replicate_grey_to_rgb = any_rgb;
}

Image read_case_image(const Case& c, int64_t want_channels, bool replicate_grey) {
  UMAMBA_CHECK(!c.images.empty(), "case {} has no image file", c.id);
  std::vector<Image> parts;
  int64_t channels = 0;
  for (const auto& p : c.images) {
    parts.push_back(io::read_image(p));
    channels += parts.back().channels();
    const Shape& a = parts.front().shape();
    const Shape& b = parts.back().shape();
    if (a.z != b.z || a.y != b.y || a.x != b.x) {
      fail_file(p.string(), "shape {} differs from the case's first image {}", to_string(b),
                to_string(a));
    }
  }
  Image first = parts.front();
  if (parts.size() == 1) {
    if (want_channels <= 0 || first.channels() == want_channels) return first;
    Shape s = first.shape();
    s.c = want_channels;
    Image out = Image::zeros(first.dtype(), s, first.geometry());
    for (int64_t ch = 0; ch < want_channels; ++ch) {
      int64_t src = ch;
      if (first.channels() == 1 && replicate_grey) src = 0;
      if (src >= first.channels()) {
        fail_file(c.images.front().string(), "has {} channels, {} expected", first.channels(),
                  want_channels);
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
  if (want_channels > 0 && channels != want_channels) {
    fail_file(c.images.front().string(), "case {} has {} channels, dataset.json names {}", c.id,
              channels, want_channels);
  }
  return out;
}

}  // namespace umamba::plan
