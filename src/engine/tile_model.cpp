// Adapters from torch modules and callables to the engine's TileModel (see tile_model.h).
#include "engine/tile_model.h"

#include "core/error.h"

namespace umamba::engine {

void validate_spec(const TileModelSpec& spec) {
  UMAMBA_CHECK(spec.in_channels >= 1, "tile model: {} input channels", spec.in_channels);
  UMAMBA_CHECK(spec.num_classes >= 1, "tile model: {} classes", spec.num_classes);
  UMAMBA_CHECK(spec.patch_size.size() == 2 || spec.patch_size.size() == 3,
               "tile model: patch size has {} axes, expected 2 (Y, X) or 3 (Z, Y, X)",
               spec.patch_size.size());
  for (size_t a = 0; a < spec.patch_size.size(); ++a) {
    UMAMBA_CHECK(spec.patch_size[a] >= 1, "tile model: patch axis {} is {}", a, spec.patch_size[a]);
  }
}

ModuleTileModel::ModuleTileModel(torch::nn::AnyModule module, const TileModelSpec& spec,
                                 torch::Device device)
    : module_(std::move(module)), spec_(spec), device_(device) {
  validate_spec(spec_);
  UMAMBA_CHECK(!module_.is_empty(), "tile model: empty module");
  module_.ptr()->to(device_);
  module_.ptr()->eval();
}

torch::Tensor ModuleTileModel::forward(const torch::Tensor& batch) {
  return module_.forward(batch);
}

FunctionTileModel::FunctionTileModel(Forward forward, const TileModelSpec& spec,
                                     torch::Device device)
    : forward_(std::move(forward)), spec_(spec), device_(device) {
  validate_spec(spec_);
  UMAMBA_CHECK(static_cast<bool>(forward_), "tile model: empty forward function");
}

}  // namespace umamba::engine
