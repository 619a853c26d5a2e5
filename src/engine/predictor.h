// The tiling engine: sliding-window inference over images and volumes of any size, streamed in
// bands so that memory follows the band, not the image.
//
// Semantics are nnU-Net v2's (reference §4.4; geometry in sliding_window.h): the normalised image
// is padded with zeros up to the patch, tiles are placed at compute_steps() positions, each tile's
// logits (averaged over the mirrored passes when mirroring is on) are multiplied by the Gaussian
// importance map and summed, the weights are summed alongside, and the sum is divided by the
// weights; softmax gives probabilities and argmax the class map. Accumulation is in float32
// (nnU-Net 2.2.1 accumulates in float16; float32 is at least as exact). A 2D model over a 3D
// volume predicts every slice on its own.
//
// Streaming: the padded image is a sequence of "lines" (an image row [C, X] for 2D models, a
// slice [C, Y, X] for 3D models); tiles are visited in raster order, so once every tile that
// starts at or before a line has been accumulated, all lines before the next tile's first line are
// final. Those lines are finished (divided, softmax, argmax, padding removed) and handed to the
// band callback in order. Memory: the input window holds about one patch of lines, the
// accumulator (K floats per pixel) one patch plus one step, plus the batches in flight.
//
// Pipeline (tbb::parallel_pipeline, every stage serial and in order, the work inside each stage
// parallel): 1. read new lines through the RegionSource, normalise them, cut a batch of tiles
// (into pinned memory when the model is on CUDA); 2. copy the batch to the device (asynchronous),
// run the model (mirroring, optional autocast) and start the copy of the logits back, without
// waiting for the GPU; 3. wait for the batch, accumulate it with the Gaussian weights; 4. finish
// the completed lines and call the band callback. Stages work on different batches at the same
// time, so reading and accumulation overlap with inference.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/image.h"
#include "engine/normalization.h"
#include "engine/sliding_window.h"

namespace umamba::io {
class ImageReader;
}

namespace umamba::engine {

class TileModel;

// Where the input pixels come from: regions of an image [C, Z, Y, X].
class RegionSource {
 public:
  virtual ~RegionSource() = default;
  virtual Shape shape() const = 0;
  virtual DType dtype() const = 0;
  virtual Geometry geometry() const { return {}; }
  // All channels of `box` (inside the image); the result may be a view.
  virtual Image read(const Box& box) = 0;
};

// An image in memory (views, no copies).
class ImageSource : public RegionSource {
 public:
  explicit ImageSource(Image image);
  Shape shape() const override { return image_.shape(); }
  DType dtype() const override { return image_.dtype(); }
  Geometry geometry() const override { return image_.geometry(); }
  Image read(const Box& box) override { return image_.region(box); }

 private:
  Image image_;
};

// A file opened with io::open_image: regions are decoded on demand (read_region).
class ReaderSource : public RegionSource {
 public:
  explicit ReaderSource(io::ImageReader& reader) : reader_(reader) {}
  Shape shape() const override;
  DType dtype() const override;
  Geometry geometry() const override;
  Image read(const Box& box) override;

 private:
  io::ImageReader& reader_;
};

// One file opened by several readers; a region is split into blocks aligned to the file's tiles
// (columns) or strips (rows) and the blocks are decoded in parallel, one reader per block, since
// one io::ImageReader decodes its regions one at a time. Use it for large tiled TIFFs, where
// decoding limits the engine's throughput.
class ParallelFileSource : public RegionSource {
 public:
  // `readers`: how many times the file is opened (0: the TBB thread count, at most 16).
  explicit ParallelFileSource(const std::filesystem::path& path, int readers = 0);
  ~ParallelFileSource() override;
  Shape shape() const override;
  DType dtype() const override;
  Geometry geometry() const override;
  Image read(const Box& box) override;
  int readers() const { return static_cast<int>(readers_.size()); }

 private:
  std::vector<std::unique_ptr<io::ImageReader>> readers_;
  int64_t tile_w_ = 0, tile_h_ = 0;  // TIFF tile size; strips: tile_w_ = 0, tile_h_ = rows
};

// The model ran out of device memory even with one tile per model call (see "Out of memory"
// below); the caller may run the input again on another device.
class DeviceOutOfMemory : public Error {
 public:
  using Error::Error;
};

// The model produced a NaN or infinite logit; no class map is computed from it.
class NonFiniteOutput : public Error {
 public:
  using Error::Error;
};

enum Output : unsigned { kClasses = 1u, kProbabilities = 2u, kLogits = 4u };

enum class Precision { F32, F16, BF16 };  // autocast on the model's device (F32: none)
Precision precision_from_name(const std::string& name);  // "fp32", "fp16", "bf16"

struct EngineOptions {
  double tile_step = 0.5;  // fraction of the patch between tile starts (nnU-Net: 0.5)
  bool use_gaussian = true;
  GaussianOptions gaussian;
  // Overlap-tile mode (not nnU-Net's): weights are zero within `edge_margin` voxels of a tile edge
  // that lies inside the padded image, so every voxel is predicted from tiles that saw at least
  // that much context. 0 = nnU-Net. Must be below patch * (1 - tile_step) / 2 on every axis.
  int64_t edge_margin = 0;
  // Mirroring test-time augmentation over these model axes (2D: 0 = Y, 1 = X; 3D: 0 = Z, 1 = Y,
  // 2 = X): every non-empty combination is flipped, predicted, flipped back and averaged with the
  // plain pass (nnU-Net's order). Empty = off.
  std::vector<int> mirror_axes;
  int64_t batch_size = 4;         // tiles per model call (fewer after an out-of-memory)
  int max_batches_in_flight = 4;  // pipeline tokens: bounds memory, allows overlap
  Precision precision = Precision::F32;
  unsigned outputs = kClasses;  // which Band images to fill
};

// A finished part of the prediction, in original image coordinates, full width.
struct Band {
  int64_t z0 = 0, dz = 1;  // slices
  int64_t y0 = 0, dy = 0;  // rows (a 3D model's bands are whole slices: y0 = 0, dy = Y)
  bool last = false;       // nothing follows
  Image classes;           // [1, dz, dy, X] u8 (<= 256 classes) or u16: argmax of probabilities
  Image probabilities;     // [K, dz, dy, X] f32 softmax
  Image logits;            // [K, dz, dy, X] f32 blended logits
};

// Called once per band, in image order (slice by slice, top to bottom), from one thread at a time.
using BandCallback = std::function<void(const Band&)>;

struct EngineStats {
  int64_t tiles = 0, batches = 0, bands = 0, model_calls = 0;
  double wall_s = 0;        // the whole run
  double stats_s = 0;       // the pre-pass over the image for per-image statistics
  double read_s = 0;        // RegionSource::read (decoding)
  double preprocess_s = 0;  // normalising and cutting tiles
  double infer_s = 0;       // host time in the model stage (launches; on CPU, the compute)
  double accumulate_s = 0;  // waiting for the device's result and Gaussian accumulation
  double finish_s = 0;      // division, softmax, argmax, cropping
  double callback_s = 0;    // the band callback (post-processing, writing)
  double device_s = 0;      // CUDA: sum of per-batch device intervals (events); 0 on CPU
  std::string device;       // "cpu", "cuda:0"
  // Streaming footprint: the most lines held at once by the input window and the accumulator
  // (a line is an image row for 2D models, a slice for 3D models, padded width).
  int64_t peak_input_lines = 0, peak_accumulator_lines = 0;
  int64_t line_pixels = 0;  // padded pixels per line
  // Out of memory: model calls that failed and were retried with fewer tiles, and the fewest
  // tiles per call that the run came down to (batch_size when none failed).
  int64_t oom_retries = 0, tiles_per_call = 0;
  std::vector<ChannelStats> image_stats;  // per channel, when a scheme needed them
};

// Streams the prediction of `source` band by band into `on_band`. Throws umamba::Error on bad
// options (messages name the option and the value) and propagates the callback's exceptions.
//
// Out of memory: when a model call fails with c10::OutOfMemoryError, the same tiles are run again
// in calls of half as many tiles (the CUDA cache emptied first), down to one tile per call; the
// smaller size is kept for the rest of the run (EngineStats::oom_retries, tiles_per_call). Tiles
// do not depend on each other, so the result is the same. At one tile per call it throws
// DeviceOutOfMemory. NaN or infinite logits throw NonFiniteOutput before a class is computed from
// them.
//
// Limits: before allocating, the engine's own buffers (input window, accumulator, batches in
// flight; see predict_memory_bytes) are checked against core/memory.h's allocation_limit()
// (UMAMBA_MAX_ALLOC_BYTES); the error names the limit and the estimate.
EngineStats predict_bands(RegionSource& source, TileModel& model,
                          const Normalization& normalization, const EngineOptions& options,
                          const BandCallback& on_band);

// The engine's own peak buffer memory for an input of `shape`, in bytes (input window, accumulator,
// batches in flight on the host; the model's own memory is not included). Throws Error naming
// UMAMBA_MAX_ALLOC_BYTES when it exceeds allocation_limit().
uint64_t predict_memory_bytes(const Shape& shape, const TileModel& model,
                              const EngineOptions& options);

// The whole prediction in memory (the images requested in options.outputs).
struct Prediction {
  Image classes;        // [1, Z, Y, X]
  Image probabilities;  // [K, Z, Y, X] f32
  Image logits;         // [K, Z, Y, X] f32
  EngineStats stats;
};
Prediction predict_image(const Image& image, TileModel& model, const Normalization& normalization,
                         const EngineOptions& options);

// Regroups bands into chunks of `rows` rows (the last chunk of a slice may be shorter), for writers
// that need bands aligned to their tile height (io::TiffBandWriter). Works on 2D-model bands
// (dz = 1); a band of several slices is split into slices first. Memory: one chunk.
class RowRebander {
 public:
  using Sink = std::function<void(const Image& rows, int64_t z, int64_t y0)>;
  // `which` picks the Band image (kClasses, kProbabilities or kLogits); `height` is the image's
  // row count Y, where a slice ends and its last, shorter chunk is emitted.
  RowRebander(int64_t rows, int64_t height, Output which, Sink sink);
  void add(const Band& band);
  // Emits what is buffered; add() calls it when a chunk is full or a slice completes.
  void flush();

 private:
  int64_t rows_, height_;
  Output which_;
  Sink sink_;
  Image buffer_;
  int64_t filled_ = 0, z_ = 0, y0_ = 0;
};

}  // namespace umamba::engine
