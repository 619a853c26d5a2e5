// Training-time data augmentation on the device, with LibTorch ops, following nnU-Net v2.2.1's
// get_training_transforms (reference/umamba-mamba-nnunet.md §4.5; batchgenerators 0.25 defaults).
//
// What: per sample of a batch [B, C, *S] (S = the enlarged patch the loader cropped), in this order
//  1. spatial: rotation (p 0.2; 2D ±180° or ±15° when the patch is elongated > 1.5; 3D ±30° per
//  axis,
//     or ±180° in-plane for "dummy 2D" patches) and scaling (p 0.2, factor in (0.7, 1.4) drawn as
//     batchgenerators does: below 1 or above 1 with probability ½ each), the same factor on all
//     axes, then the centre crop to the final patch; samples without a spatial change are cropped
//     exactly (integer offsets);
//  2. Gaussian noise p 0.1 (sigma drawn from U(0, 0.1): batchgenerators passes the "variance" as
//     the standard deviation);
//  3. Gaussian blur p 0.2, sigma U(0.5, 1) per channel, each channel with p 0.5 (scipy's
//     gaussian_filter: truncate 4, 'reflect' = half-sample symmetric border);
//  4. multiplicative brightness p 0.15, factor U(0.75, 1.25) per channel;
//  5. contrast p 0.15, factor in (0.75, 1.25) per channel, range preserved (clipped to the
//     channel's min/max before the change);
//  6. low resolution p 0.25, per channel with p 0.5: zoom U(0.5, 1), nearest down, cubic up
//     (dummy 2D: the first axis is kept);
//  7. inverted gamma p 0.1 and 8. gamma p 0.3, gamma in (0.7, 1.5), statistics retained;
//  9. mirroring: each axis flipped with p 0.5 (image and labels together).
// Labels follow the spatial transform as batchgenerators' order-1 segmentation interpolation
// (one-hot, linear, the winning class), outside the image they become background, and they are
// flipped with the image; intensity transforms leave them alone.
//
// Method: every random number is drawn on the host from a 64-bit generator seeded per batch
// (AugmentRandom), and Gaussian noise from a torch::Generator on the batch's device seeded from
// it, so a batch is a pure function of its seed (exact resume, any thread count).
// Rotation + scaling is one affine grid per sample (affine_grid + grid_sample, align_corners =
// true, in voxel units about the patch centre as batchgenerators' augment_spatial).
//
// Limits: image interpolation is bicubic convolution in 2D and trilinear in 3D (batchgenerators
// uses cubic B-splines; LibTorch's grid_sample has no tricubic mode); no elastic deformation
// (nnU-Net turns it off too); label -1 (nnU-Net's "outside the non-zero mask") is not used.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <random>
#include <vector>

namespace umamba::train {

// nnU-Net's augmentation parameters for one patch size (configure_rotation_dummyDA_mirroring_and_
// inital_patch_size and get_training_transforms, v2.2.1).
struct AugmentConfig {
  int dims = 2;
  std::vector<int64_t> patch;          // final patch [Y,X] or [Z,Y,X]
  std::vector<int64_t> initial_patch;  // what the loader crops (room for rotation and scaling)
  std::vector<double> rotation_max;    // |angle| bound per rotation axis, radians (x, y, z)
  bool dummy_2d = false;               // 3D patch with max/first edge > 3: in-plane rotation only
  std::vector<int> mirror_axes;        // spatial axes flipped with p 0.5 each
  // Probabilities and ranges (nnU-Net's values by default).
  double p_rotation = 0.2, p_scale = 0.2;
  double scale_min = 0.7, scale_max = 1.4;
  double p_noise = 0.1, noise_sigma_max = 0.1;
  double p_blur = 0.2, blur_p_channel = 0.5, blur_sigma_min = 0.5, blur_sigma_max = 1.0;
  double p_brightness = 0.15, brightness_min = 0.75, brightness_max = 1.25;
  double p_contrast = 0.15, contrast_min = 0.75, contrast_max = 1.25;
  double p_lowres = 0.25, lowres_p_channel = 0.5, lowres_zoom_min = 0.5, lowres_zoom_max = 1.0;
  double p_gamma_inverted = 0.1, p_gamma = 0.3, gamma_min = 0.7, gamma_max = 1.5;
  double p_mirror_axis = 0.5;
  bool enabled = true;  // false: centre crop only (validation-style)
};

// The configuration nnU-Net derives from a patch size (2 or 3 edges).
AugmentConfig default_augment_config(const std::vector<int64_t>& patch);

// batchgenerators' get_patch_size: the patch grown so that rotation by the largest angles (capped
// at 90°) and scaling down to `scale_min` stay inside it; edges truncated to integers.
std::vector<int64_t> enlarged_patch_size(const std::vector<int64_t>& patch,
                                         const std::vector<double>& rotation_max,
                                         double scale_min = 0.85);

// The host-side random stream of one batch (SplitMix64-seeded mt19937_64; uniform doubles in
// [0, 1) from the top 53 bits, so draws are the same on every platform).
class AugmentRandom {
 public:
  explicit AugmentRandom(uint64_t seed);
  double uniform();                      // [0, 1)
  double uniform(double lo, double hi);  // [lo, hi)
  int64_t index(int64_t n);              // [0, n)
  uint64_t next_u64();

 private:
  std::mt19937_64 engine_;
};

// A seed derived from a base seed and up to three counters (SplitMix64 mixing).
uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0);

// What was applied to each sample (for tests and logs).
struct SampleAugmentation {
  bool rotated = false, scaled = false;
  std::vector<double> angles;  // radians, per rotation axis
  double scale = 1.0;
  bool noise = false, blur = false, brightness = false, contrast = false, lowres = false;
  bool gamma_inverted = false, gamma = false;
  std::vector<bool> mirrored;  // per spatial axis
};

// Which transforms may run (tests switch them one by one; all on by default).
struct TransformMask {
  bool spatial = true, noise = true, blur = true, brightness = true, contrast = true;
  bool lowres = true, gamma_inverted = true, gamma = true, mirror = true;
};

// Augments a batch. data: [B, C, *initial_patch] float32; labels: [B, 1, *initial_patch] float32
// holding class indices. Returns data [B, C, *patch] and labels [B, 1, *patch] (float32 class
// indices), on the input's device. `applied` (optional) receives one record per sample.
struct Augmented {
  torch::Tensor data, labels;
};
Augmented augment_batch(const torch::Tensor& data, const torch::Tensor& labels,
                        const AugmentConfig& config, AugmentRandom& rng,
                        const TransformMask& mask = {},
                        std::vector<SampleAugmentation>* applied = nullptr);

// The centre crop of [B, C, *S] to `patch` (integer offsets S//2 - patch//2, batchgenerators'
// center_crop_aug).
torch::Tensor center_crop(const torch::Tensor& x, const std::vector<int64_t>& patch);

// ---- single transforms (exposed for tests) ----

// Rotation (radians, per axis as batchgenerators: 2D one angle; 3D x, y, z) and uniform scaling of
// one sample about the patch centres: output voxel o reads input position
// scale · Rᵀ · (o − (P−1)/2) + (S−1)/2. image [C, *S] → [C, *P] (bicubic 2D, trilinear 3D, zeros
// outside); labels [1, *S] class indices → [1, *P] (one-hot linear, arg-max, background outside).
Augmented spatial_transform(const torch::Tensor& image, const torch::Tensor& labels,
                            const std::vector<double>& angles, double scale,
                            const std::vector<int64_t>& patch, int64_t num_classes);

// scipy.ndimage.gaussian_filter of one channel [*S] with `sigma` on every axis listed in `axes`
// (truncate 4, mode 'reflect').
torch::Tensor gaussian_blur(const torch::Tensor& channel, double sigma,
                            const std::vector<int>& axes);

// batchgenerators augment_gamma on one channel: optional inversion, ((x − min)/(range + 1e-7))^γ
// · range + min, then the channel's mean and std restored.
torch::Tensor gamma_transform(const torch::Tensor& channel, double gamma, bool invert);

// batchgenerators augment_contrast on one channel (preserve_range).
torch::Tensor contrast_transform(const torch::Tensor& channel, double factor);

// Interpolation options for "nearest-exact" (skimage's order-0 resize: output voxel o reads input
// floor((o + 0.5) · in / out)) to `size`. align_corners is set (to false, which nearest-exact
// ignores) only because LibTorch's C++ interpolate otherwise warns on every call.
torch::nn::functional::InterpolateFuncOptions nearest_exact_options(std::vector<int64_t> size);

// batchgenerators augment_linear_downsampling_scipy on one channel: nearest down to
// round(shape · zoom) (axes in `ignore_axes` kept), cubic back up (bicubic 2D, trilinear 3D).
torch::Tensor lowres_transform(const torch::Tensor& channel, double zoom,
                               const std::vector<int>& ignore_axes);

// Deep-supervision targets: labels [B, 1, *P] downsampled by each scale (nearest-exact, order 0),
// index 0 the full resolution. `scales` are per-axis divisors, e.g. {{1,1},{2,2},{4,4}}.
std::vector<torch::Tensor> downsample_targets(const torch::Tensor& labels,
                                              const std::vector<std::vector<int64_t>>& scales);

}  // namespace umamba::train
