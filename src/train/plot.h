// The training curves as a picture: stacked panels of line series (loss, validation metric,
// learning rate), drawn into an RGB image without any plotting library.
//
// Each panel gets a frame, four horizontal grid lines, its series as 1-pixel-wide polylines
// (thickened to 2 px), and labels in a built-in 3×5 pixel font scaled ×2: the title with each
// series' name in its colour, the y range (min and max) at the left and the last x at the right.
// Limits: a fixed layout; labels use capital letters, digits and . - + : ( ) / only (other
// characters are drawn as blanks); points with non-finite values are skipped.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/image.h"

namespace umamba::train {

struct PlotSeries {
  std::string name;
  std::array<uint8_t, 3> color{0, 0, 0};
  std::vector<std::pair<double, double>> points;  // (x, y)
};

struct PlotPanel {
  std::string title;
  std::vector<PlotSeries> series;
  bool log_y = false;  // y on a log10 scale (non-positive values skipped)
};

// RGB u8 image [3, 1, panels·panel_height, width].
Image render_plot(const std::vector<PlotPanel>& panels, int64_t width = 900,
                  int64_t panel_height = 240);

// "1.23e-04" style compact numbers for the labels.
std::string plot_number(double v);

}  // namespace umamba::train
