// 2D object outlines: polygons along pixel edges, GeoJSON detections for QuPath, and an overlay
// of outlines on the image.
//
// Method: crack following. Each label's outer boundary is walked along pixel edges from the top
// edge of its first pixel in raster order, keeping the object on the right-hand side (y pointing
// down); at each vertex the two pixels ahead decide: ahead-left inside -> turn left, else
// ahead-right inside -> straight, else turn right. With 8-connectivity a diagonal contact (ahead-
// left inside, ahead-right outside) is followed as part of the object. Vertices are emitted at
// turns only, so a polygon encloses exactly the object's pixels plus its holes; its shoelace
// area is that pixel count. Coordinates are pixel-corner positions (x, y) in pixel units, the
// convention QuPath uses (pixel (0,0) covers [0,1)²); rings are closed and counter-clockwise in
// the raw numbers (RFC 7946 exterior ring orientation).
//
// Limits: 2D only; holes are not emitted (outer boundary only); a label made of several
// separate pieces gets the outline of the piece holding its first pixel.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/image.h"

namespace umamba::postprocess {

struct Outline {
  uint32_t label = 0;
  std::vector<std::array<int64_t, 2>> vertices;  // (x, y), closed: first == last
};

// labels [height, width] u32; one outline per label present, by ascending label.
std::vector<Outline> trace_outlines(const uint32_t* labels, int64_t height, int64_t width,
                                    bool eight_connected = true);
// One-channel integer 2D label image (Z = 1).
std::vector<Outline> trace_outlines(const Image& labels, bool eight_connected = true);

// Signed shoelace area of a closed ring (positive: counter-clockwise in raw coordinates).
double polygon_area(const Outline& outline);

// A GeoJSON FeatureCollection: one Feature per outline with a Polygon geometry and properties
// {"objectType": "detection", "name": "<label>", "measurements": {"label": <label>}}.
std::string outlines_geojson(const std::vector<Outline>& outlines);

// The image as RGB u8 [3,1,Y,X] (grey repeated; more than 3 channels: the first 3; each channel
// stretched between its 0.5th and 99.5th percentile) with each label's boundary pixels (pixels of
// the label with a 4-neighbour of another value) drawn in a colour derived from the label.
Image overlay_outlines(const Image& image, const Image& labels);

}  // namespace umamba::postprocess
