// LibTorch glue for the CUDA selective-scan kernels: a torch::autograd::Function whose forward and
// backward call cuda/selective_scan.h on the current CUDA stream. Tensors are only checked, cast
// and given a contiguous last dimension here; everything else is the kernels' (docs/cuda.md).
//
// Compiled into umamba_model only when the kernels are built (UMAMBA_WITH_CUDA_KERNELS, set by
// src/model/CMakeLists.txt when the umamba_cuda target exists); with a LibTorch that lacks CUDA the
// op says so instead.
#include "model/selective_scan_cuda.h"

#ifdef UMAMBA_WITH_CUDA_KERNELS

#if __has_include(<c10/cuda/CUDAGuard.h>)
#define UMAMBA_SCAN_TORCH_CUDA 1
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <string>

#include "core/error.h"
#include "cuda/selective_scan.h"

#ifdef UMAMBA_SCAN_TORCH_CUDA
#include "model/cuda_glue.h"

namespace umamba::model::detail {

namespace {

namespace scan = ::umamba::cuda;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

scan::ScanDtype scan_dtype(c10::ScalarType t) {
  return kernel_dtype(t, "selective_scan_cuda: u");
}

scan::RowStrides row_strides(const torch::Tensor& t) {
  return {t.stride(0), t.stride(1)};
}
scan::StateStrides state_strides(const torch::Tensor& t) {
  return {t.stride(0), t.stride(1)};
}

torch::Tensor last_dim_contiguous(const torch::Tensor& t) {
  return t.size(-1) == 1 || t.stride(-1) == 1 ? t : t.contiguous();
}

torch::Tensor scratch_bytes(std::size_t bytes, const torch::Tensor& like) {
  return torch::empty({static_cast<std::int64_t>(std::max<std::size_t>(bytes, 16))},
                      like.options().dtype(torch::kUInt8));
}

class SelectiveScanFunction : public torch::autograd::Function<SelectiveScanFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& u,
                               const torch::Tensor& delta, const torch::Tensor& A,
                               const torch::Tensor& B, const torch::Tensor& C,
                               const torch::Tensor& D, const torch::Tensor& z,
                               const torch::Tensor& delta_bias, bool delta_softplus,
                               bool keep_states, bool has_D, bool has_z, bool has_bias) {
    const c10::cuda::CUDAGuard guard(u.device());
    const scan::ScanShape shape{u.size(0), u.size(1), u.size(2), A.size(1)};
    const scan::ScanPlan plan = scan::plan_scan(shape);
    torch::Tensor out = torch::empty({shape.batch, shape.dim, shape.len}, u.options());
    torch::Tensor states = torch::empty({0}, u.options().dtype(torch::kFloat));
    if (keep_states && plan.states_floats > 0)
      states = torch::empty({static_cast<std::int64_t>(plan.states_floats)},
                            u.options().dtype(torch::kFloat));
    torch::Tensor scratch;
    if (plan.fwd_scratch_bytes > 0) scratch = scratch_bytes(plan.fwd_scratch_bytes, u);

    scan::ScanForwardArgs a;
    a.dtype = scan_dtype(u.scalar_type());
    a.shape = shape;
    a.u = u.data_ptr();
    a.u_strides = row_strides(u);
    a.delta = delta.data_ptr();
    a.delta_strides = row_strides(delta);
    a.A = A.data_ptr<float>();
    a.B = B.data_ptr();
    a.B_strides = state_strides(B);
    a.C = C.data_ptr();
    a.C_strides = state_strides(C);
    a.D = has_D ? D.data_ptr<float>() : nullptr;
    a.z = has_z ? z.data_ptr() : nullptr;
    if (has_z) a.z_strides = row_strides(z);
    a.delta_bias = has_bias ? delta_bias.data_ptr<float>() : nullptr;
    a.delta_softplus = delta_softplus;
    a.out = out.data_ptr();
    a.out_strides = row_strides(out);
    a.states = states.numel() > 0 ? states.data_ptr<float>() : nullptr;
    a.scratch = scratch.defined() ? scratch.data_ptr() : nullptr;
    scan::scan_forward(a, plan, current_stream(u));

    // Absent optional inputs arrive as empty placeholders (has_*), so that no undefined tensor
    // passes through the autograd function.
    ctx->save_for_backward({u, delta, A, B, C, D, z, delta_bias, states});
    ctx->saved_data["delta_softplus"] = delta_softplus;
    ctx->saved_data["has_D"] = has_D;
    ctx->saved_data["has_z"] = has_z;
    ctx->saved_data["has_bias"] = has_bias;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &u = saved[0], &delta = saved[1], &A = saved[2], &B = saved[3],
                        &C = saved[4], &D = saved[5], &z = saved[6], &delta_bias = saved[7],
                        &states = saved[8];
    const bool delta_softplus = ctx->saved_data["delta_softplus"].toBool();
    const bool has_D = ctx->saved_data["has_D"].toBool();
    const bool has_z = ctx->saved_data["has_z"].toBool();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const c10::cuda::CUDAGuard guard(u.device());
    const scan::ScanShape shape{u.size(0), u.size(1), u.size(2), A.size(1)};
    const scan::ScanPlan plan = scan::plan_scan(shape);
    UMAMBA_CHECK(
        plan.states_floats == 0 || states.numel() == static_cast<std::int64_t>(plan.states_floats),
        "selective_scan_cuda: backward without the forward's states (the forward ran "
        "with gradients disabled)");
    torch::Tensor dout = grad_outputs[0].defined()
                             ? last_dim_contiguous(grad_outputs[0].to(u.scalar_type()))
                             : torch::zeros_like(u);
    const auto rows = [&](const torch::Tensor& like) {
      return torch::empty({shape.batch, shape.dim, shape.len}, like.options());
    };
    torch::Tensor du = rows(u), ddelta = rows(u);
    torch::Tensor dz = has_z ? rows(u) : torch::Tensor();
    const auto f32 = u.options().dtype(torch::kFloat);
    torch::Tensor dA = torch::empty({shape.dim, shape.nstate}, f32);
    torch::Tensor dB = torch::empty({shape.batch, shape.nstate, shape.len}, f32);
    torch::Tensor dC = torch::empty({shape.batch, shape.nstate, shape.len}, f32);
    torch::Tensor dD = has_D ? torch::empty({shape.dim}, f32) : torch::Tensor();
    torch::Tensor dbias = has_bias ? torch::empty({shape.dim}, f32) : torch::Tensor();
    torch::Tensor scratch;
    if (plan.bwd_scratch_bytes > 0) scratch = scratch_bytes(plan.bwd_scratch_bytes, u);

    scan::ScanBackwardArgs a;
    a.dtype = scan_dtype(u.scalar_type());
    a.shape = shape;
    a.u = u.data_ptr();
    a.u_strides = row_strides(u);
    a.delta = delta.data_ptr();
    a.delta_strides = row_strides(delta);
    a.A = A.data_ptr<float>();
    a.B = B.data_ptr();
    a.B_strides = state_strides(B);
    a.C = C.data_ptr();
    a.C_strides = state_strides(C);
    a.D = has_D ? D.data_ptr<float>() : nullptr;
    a.z = has_z ? z.data_ptr() : nullptr;
    if (has_z) a.z_strides = row_strides(z);
    a.delta_bias = has_bias ? delta_bias.data_ptr<float>() : nullptr;
    a.delta_softplus = delta_softplus;
    a.states = states.numel() > 0 ? states.data_ptr<float>() : nullptr;
    a.dout = dout.data_ptr();
    a.dout_strides = row_strides(dout);
    a.du = du.data_ptr();
    a.du_strides = row_strides(du);
    a.ddelta = ddelta.data_ptr();
    a.ddelta_strides = row_strides(ddelta);
    if (dz.defined()) {
      a.dz = dz.data_ptr();
      a.dz_strides = row_strides(dz);
    }
    a.dA = dA.data_ptr<float>();
    a.dB = dB.data_ptr<float>();
    a.dC = dC.data_ptr<float>();
    a.dD = dD.defined() ? dD.data_ptr<float>() : nullptr;
    a.ddelta_bias = dbias.defined() ? dbias.data_ptr<float>() : nullptr;
    a.scratch = scratch.defined() ? scratch.data_ptr() : nullptr;
    scan::scan_backward(a, plan, current_stream(u));

    return {du,
            ddelta,
            dA,
            dB.to(B.scalar_type()),
            dC.to(C.scalar_type()),
            dD,
            dz,
            dbias,
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

void check_shape(const torch::Tensor& t, std::initializer_list<std::int64_t> sizes,
                 const char* name) {
  UMAMBA_CHECK(t.sizes() == c10::IntArrayRef(sizes),
               "selective_scan_cuda: {} has shape {}, expected {}", name, c10::str(t.sizes()),
               c10::str(c10::IntArrayRef(sizes)));
}

}  // namespace

torch::Tensor selective_scan_cuda(const torch::Tensor& u, const torch::Tensor& delta,
                                  const torch::Tensor& A, const torch::Tensor& B,
                                  const torch::Tensor& C, const std::optional<torch::Tensor>& D,
                                  const std::optional<torch::Tensor>& z,
                                  const std::optional<torch::Tensor>& delta_bias,
                                  bool delta_softplus) {
  UMAMBA_CHECK(u.dim() == 3, "selective_scan_cuda: u must be (batch, dim, len), got {} dims",
               u.dim());
  UMAMBA_CHECK(A.dim() == 2, "selective_scan_cuda: A must be (dim, nstate), got {} dims", A.dim());
  UMAMBA_CHECK(u.is_cuda(), "selective_scan_cuda: u is on {}, not a CUDA device",
               c10::str(u.device()));
  const std::int64_t batch = u.size(0), dim = u.size(1), len = u.size(2), nstate = A.size(1);
  const auto dtype = u.scalar_type();
  (void)scan_dtype(dtype);
  check_shape(delta, {batch, dim, len}, "delta");
  check_shape(A, {dim, nstate}, "A");
  check_shape(B, {batch, nstate, len}, "B");
  check_shape(C, {batch, nstate, len}, "C");
  if (D && D->defined()) check_shape(*D, {dim}, "D");
  if (z && z->defined()) check_shape(*z, {batch, dim, len}, "z");
  if (delta_bias && delta_bias->defined()) check_shape(*delta_bias, {dim}, "delta_bias");
  for (const torch::Tensor* t : {&delta, &A, &B, &C})
    UMAMBA_CHECK(t->device() == u.device(), "selective_scan_cuda: inputs on {} and {}",
                 c10::str(u.device()), c10::str(t->device()));

  // Casts outside the autograd function, so autograd casts the gradients back.
  auto same = [&](const torch::Tensor& t) { return last_dim_contiguous(t.to(u.device(), dtype)); };
  const auto placeholder = torch::empty({0}, u.options().dtype(torch::kFloat));
  auto f32 = [&](const std::optional<torch::Tensor>& t) {
    return t && t->defined() ? t->to(u.device(), torch::kFloat).contiguous() : placeholder;
  };
  const torch::Tensor uu = last_dim_contiguous(u);
  const torch::Tensor dd = same(delta), BB = same(B), CC = same(C);
  const torch::Tensor AA = A.to(u.device(), torch::kFloat).contiguous();
  const bool has_D = D && D->defined(), has_z = z && z->defined();
  const bool has_bias = delta_bias && delta_bias->defined();
  const torch::Tensor zz = has_z ? same(*z) : placeholder.to(dtype);
  const torch::Tensor DD = f32(D), bb = f32(delta_bias);
  bool grad = false;
  if (torch::GradMode::is_enabled())
    for (const torch::Tensor* t : {&uu, &dd, &AA, &BB, &CC, &DD, &zz, &bb})
      grad = grad || t->requires_grad();
  return SelectiveScanFunction::apply(uu, dd, AA, BB, CC, DD, zz, bb, delta_softplus, grad, has_D,
                                      has_z, has_bias);
}

}  // namespace umamba::model::detail

#else  // LibTorch without CUDA headers

namespace umamba::model::detail {

torch::Tensor selective_scan_cuda(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                  const torch::Tensor&, const torch::Tensor&,
                                  const std::optional<torch::Tensor>&,
                                  const std::optional<torch::Tensor>&,
                                  const std::optional<torch::Tensor>&, bool) {
  throw Unsupported(
      "selective_scan_cuda: this LibTorch has no CUDA support; use a CUDA build of LibTorch");
}

}  // namespace umamba::model::detail

#endif  // UMAMBA_SCAN_TORCH_CUDA
#endif  // UMAMBA_WITH_CUDA_KERNELS
