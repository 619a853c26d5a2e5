// Shared helpers of the model tests: the naive selective-scan reference and small utilities.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <string>

#include "model/model_folder.h"  // remove_tree: std::filesystem::remove_all crashes beside libtorch

namespace umamba::model::test {

// The plain per-step reference: mamba_ssm's selective_scan_ref written with LibTorch ops, one
// time step at a time. Differentiable through autograd (it is the gradient reference).
inline torch::Tensor naive_scan(const torch::Tensor& u, const torch::Tensor& delta,
                                const torch::Tensor& A, const torch::Tensor& B,
                                const torch::Tensor& C, const std::optional<torch::Tensor>& D,
                                const std::optional<torch::Tensor>& z,
                                const std::optional<torch::Tensor>& delta_bias, bool softplus) {
  const auto dt_type = u.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  torch::Tensor dt = delta.to(dt_type);
  if (delta_bias) dt = dt + delta_bias->to(dt_type).unsqueeze(-1);
  if (softplus) dt = torch::nn::functional::softplus(dt);
  const torch::Tensor uf = u.to(dt_type), Af = A.to(dt_type), Bf = B.to(dt_type),
                      Cf = C.to(dt_type);
  const int64_t batch = u.size(0), dim = u.size(1), len = u.size(2), n = A.size(1);
  torch::Tensor h = torch::zeros({batch, dim, n}, uf.options());
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < len; ++t) {
    const torch::Tensor dtt = dt.select(2, t).unsqueeze(-1);  // [b, d, 1]
    h = torch::exp(dtt * Af.unsqueeze(0)) * h +
        dtt * uf.select(2, t).unsqueeze(-1) * Bf.select(2, t).unsqueeze(1);
    ys.push_back((h * Cf.select(2, t).unsqueeze(1)).sum(-1));
  }
  torch::Tensor out = torch::stack(ys, 2);
  if (D) out = out + uf * D->to(dt_type).unsqueeze(-1);
  if (z) out = out * torch::silu(z->to(dt_type));
  return out.to(u.scalar_type());
}

// max |a − b| / max |b| (0 when both are zero).
inline double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const double denom = b.abs().max().item<double>();
  const double num = (a.to(b.scalar_type()) - b).abs().max().item<double>();
  return denom == 0.0 ? num : num / denom;
}

inline std::string fixture_dir(const std::string& name) {
  return std::string(UMAMBA_SOURCE_DIR) + "/tests/fixtures/model/" + name;
}

// A fresh empty temporary folder under the build tree, removed by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& name) {
    path_ = std::filesystem::path(UMAMBA_BINARY_DIR) / "test_tmp" /
            (name + "-" + std::to_string(::getpid()));
    remove_tree(path_.string());
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    try {
      remove_tree(path_.string());
    } catch (...) {
    }
  }
  const std::filesystem::path& path() const { return path_; }
  std::string str(const std::string& child = "") const {
    return child.empty() ? path_.string() : (path_ / child).string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace umamba::model::test
