// The nnU-Net v2 experiment planner; see planner.h for the rules and their source. Arithmetic
// follows the Python expressions term by term (same operation order, Python's round) so that the
// plans equal nnU-Net's on the same fingerprint.
#include "plan/planner.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "plan/numpy_compat.h"

namespace umamba::plan {

namespace {

using DVec = std::vector<double>;

DVec column(const std::vector<std::array<double, 3>>& rows, size_t axis) {
  DVec v;
  for (const auto& r : rows) v.push_back(r[axis]);
  return v;
}

DVec column(const std::vector<std::array<int64_t, 3>>& rows, size_t axis) {
  DVec v;
  for (const auto& r : rows) v.push_back(static_cast<double>(r[axis]));
  return v;
}

double product(const DVec& v) {
  double p = 1.0;
  bool first = true;
  for (double x : v) {
    p = first ? x : p * x;
    first = false;
  }
  return p;
}

template <typename T>
DVec transpose(const T& v, const std::array<int64_t, 3>& order) {
  DVec out;
  for (int64_t i : order) out.push_back(static_cast<double>(v[static_cast<size_t>(i)]));
  return out;
}

size_t argmax_first(const DVec& v) {
  return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// The last index among the largest values (np.argsort(...)[-1]; NumPy sorts arrays this short
// with a stable insertion sort, so ties keep index order).
size_t argmax_last(const DVec& v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] >= v[best]) best = i;
  return best;
}

}  // namespace

const ConfigurationPlan* Plans::find(const std::string& name) const {
  for (const auto& c : configurations)
    if (c.name == name) return &c;
  return nullptr;
}

std::string normalization_scheme(const std::string& channel_name, PlannerRules rules) {
  std::string key = channel_name;
  if (rules == PlannerRules::V2_8) {
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (key == "ct") return "CTNormalization";
    if (key == "nonorm") return "NoNormalization";
  } else {
    if (key == "CT") return "CTNormalization";
    if (key == "noNorm") return "NoNormalization";
  }
  if (key == "zscore") return "ZScoreNormalization";
  if (key == "rescale_to_0_1") return "RescaleTo01Normalization";
  if (key == "rgb_to_0_1") return "RGBTo01Normalization";
  return "ZScoreNormalization";
}

DVec fullres_target_spacing(const Fingerprint& f, const PlannerConstants& k) {
  UMAMBA_CHECK(!f.spacings.empty(), "fingerprint without cases");
  DVec target(3), target_size(3);
  for (size_t a = 0; a < 3; ++a) {
    target[a] = numpy::percentile(column(f.spacings, a), 50);
    target_size[a] = numpy::percentile(column(f.shapes_after_crop, a), 50);
  }
  const size_t worst = argmax_first(target);
  double max_other_spacing = -1, min_other_size = 0;
  bool first = true;
  for (size_t a = 0; a < 3; ++a) {
    if (a == worst) continue;
    max_other_spacing = std::max(max_other_spacing, target[a]);
    min_other_size = first ? target_size[a] : std::min(min_other_size, target_size[a]);
    first = false;
  }
  const bool aniso_spacing = target[worst] > k.anisotropy_threshold * max_other_spacing;
  const bool aniso_voxels = target_size[worst] * k.anisotropy_threshold < min_other_size;
  if (aniso_spacing && aniso_voxels) {
    double t = numpy::percentile(column(f.spacings, worst), 10);
    if (t < max_other_spacing) t = std::max(max_other_spacing, t) + 1e-5;
    target[worst] = t;
  }
  return target;
}

namespace {

class Planner {
 public:
  Planner(const Fingerprint& f, const PlannerInput& in, const PlannerOptions& o,
          const PlannerConstants& k)
      : f_(f), in_(in), o_(o), k_(k) {}

  int64_t estimate(const Topology& t, size_t dim) const {
    PlainUNetSpec spec;
    spec.patch_size = t.patch_size;
    spec.strides = t.pool_op_kernel_sizes;
    const int64_t n = t.n_stages();
    spec.features_per_stage = features_per_stage(
        n, k_.base_num_features, dim == 2 ? k_.max_features_2d : k_.max_features_3d);
    spec.n_conv_per_stage_encoder.assign(static_cast<size_t>(n), k_.blocks_per_stage_encoder);
    spec.n_conv_per_stage_decoder.assign(static_cast<size_t>(n - 1), k_.blocks_per_stage_decoder);
    spec.num_classes = in_.num_labels;
    return conv_feature_map_size(spec);
  }

  ConfigurationPlan configuration(const DVec& spacing, const DVec& median_shape,
                                  const std::string& name, double approx_voxels_dataset) const {
    const size_t dim = spacing.size();
    for (double s : spacing) UMAMBA_CHECK(s > 0, "spacing must be > 0, got {}", s);
    DVec tmp(dim);
    for (size_t i = 0; i < dim; ++i) tmp[i] = 1.0 / spacing[i];
    DVec initial(dim);
    if (dim == 3) {
      const double scale = std::pow(16777216.0 / product(tmp), 1.0 / 3.0);
      for (size_t i = 0; i < dim; ++i)
        initial[i] = static_cast<double>(numpy::round_half_even(tmp[i] * scale));
    } else {
      const double scale = std::pow(4194304.0 / product(tmp), 1.0 / 2.0);
      for (size_t i = 0; i < dim; ++i)
        initial[i] = static_cast<double>(numpy::round_half_even(tmp[i] * scale));
    }
    for (size_t i = 0; i < dim; ++i) initial[i] = std::min(initial[i], median_shape[i]);

    Topology t = pool_and_conv_props(spacing, initial, k_.featuremap_min_edge_length);
    int64_t est = estimate(t, dim);
    const double reference =
        static_cast<double>(dim == 2 ? k_.reference_val_2d : k_.reference_val_3d) *
        (o_.gpu_memory_target_gb / k_.reference_val_corresp_gb);
    const int64_t ref_bs = dim == 2 ? k_.reference_bs_2d : k_.reference_bs_3d;
    auto too_large = [&](int64_t e) {
      if (o_.rules == PlannerRules::V2_8)
        return static_cast<double>(e) / static_cast<double>(ref_bs) * 2 > reference;
      return static_cast<double>(e) > reference;
    };
    while (too_large(est)) {
      DVec ratio(dim);
      for (size_t i = 0; i < dim; ++i)
        ratio[i] = static_cast<double>(t.patch_size[i]) / median_shape[i];
      const size_t axis = argmax_last(ratio);
      IntVec shrunk = t.patch_size;
      shrunk[axis] -= t.must_be_divisible_by[axis];
      UMAMBA_CHECK(shrunk[axis] > 0,
                   "planner: the patch cannot shrink below the memory target on axis {} "
                   "(GPU memory target {} GB is too small)",
                   axis, o_.gpu_memory_target_gb);
      const Topology step = pool_and_conv_props(spacing, shrunk, k_.featuremap_min_edge_length);
      IntVec patch = t.patch_size;
      patch[axis] -= step.must_be_divisible_by[axis];
      UMAMBA_CHECK(patch[axis] > 0, "planner: patch axis {} shrank to {}", axis, patch[axis]);
      t = pool_and_conv_props(spacing, patch, k_.featuremap_min_edge_length);
      est = estimate(t, dim);
    }

    int64_t batch =
        numpy::round_half_even(reference / static_cast<double>(est) * static_cast<double>(ref_bs));
    double patch_voxels = 1.0;
    bool first = true;
    for (int64_t p : t.patch_size) {
      patch_voxels = first ? static_cast<double>(p) : patch_voxels * static_cast<double>(p);
      first = false;
    }
    const int64_t bs_cap =
        numpy::round_half_even(approx_voxels_dataset * k_.max_dataset_covered / patch_voxels);
    batch = std::max(std::min(batch, bs_cap), k_.min_batch_size);

    ConfigurationPlan c;
    c.name = name;
    c.data_identifier = o_.plans_name + "_" + name;
    c.batch_size = batch;
    c.patch_size = t.patch_size;
    c.median_image_size_in_voxels = median_shape;
    c.spacing = spacing;
    for (const auto& ch : in_.channel_names) {
      const std::string scheme = normalization_scheme(ch, o_.rules);
      c.normalization_schemes.push_back(scheme);
      c.use_mask_for_norm.push_back(f_.median_relative_size_after_cropping < 3.0 / 4.0 &&
                                    scheme == "ZScoreNormalization");
    }
    const int64_t n = t.n_stages();
    c.n_conv_per_stage_encoder.assign(static_cast<size_t>(n), k_.blocks_per_stage_encoder);
    c.n_conv_per_stage_decoder.assign(static_cast<size_t>(n - 1), k_.blocks_per_stage_decoder);
    c.num_pool_per_axis = t.num_pool_per_axis;
    c.pool_op_kernel_sizes = t.pool_op_kernel_sizes;
    c.conv_kernel_sizes = t.conv_kernel_sizes;
    c.unet_max_num_features = dim == 3 ? k_.max_features_3d : k_.max_features_2d;
    c.base_num_features = k_.base_num_features;
    c.feature_map_estimate = est;
    return c;
  }

  Plans run() const {
    UMAMBA_CHECK(!in_.channel_names.empty(), "planner: the dataset names no channel");
    UMAMBA_CHECK(in_.num_training >= 1, "planner: numTraining must be >= 1");
    UMAMBA_CHECK(o_.gpu_memory_target_gb > 0, "planner: GPU memory target {} GB must be > 0",
                 o_.gpu_memory_target_gb);
    if (!f_.foreground_intensity_properties_per_channel.empty() &&
        f_.foreground_intensity_properties_per_channel.size() != in_.channel_names.size()) {
      fail("planner: the fingerprint has intensities for {} channels, the dataset names {}",
           f_.foreground_intensity_properties_per_channel.size(), in_.channel_names.size());
    }
    Plans p;
    p.dataset_name = in_.dataset_name;
    p.plans_name = o_.plans_name;
    p.image_reader_writer = in_.image_reader_writer;
    p.rules = o_.rules;
    p.gpu_memory_target_gb = o_.gpu_memory_target_gb;
    p.foreground_intensity_properties_per_channel = f_.foreground_intensity_properties_per_channel;

    const DVec target = fullres_target_spacing(f_, k_);
    const size_t max_axis = argmax_first(target);
    std::array<int64_t, 3> fwd{};
    fwd[0] = static_cast<int64_t>(max_axis);
    size_t w = 1;
    for (size_t a = 0; a < 3; ++a)
      if (a != max_axis) fwd[w++] = static_cast<int64_t>(a);
    std::array<int64_t, 3> bwd{};
    for (size_t i = 0; i < 3; ++i) bwd[static_cast<size_t>(fwd[i])] = static_cast<int64_t>(i);
    p.transpose_forward = fwd;
    p.transpose_backward = bwd;

    const DVec spacing_t = transpose(target, fwd);
    std::vector<std::array<int64_t, 3>> new_shapes;
    for (size_t c = 0; c < f_.spacings.size(); ++c) {
      std::array<int64_t, 3> s{};
      for (size_t a = 0; a < 3; ++a) {
        s[a] = numpy::round_half_even(f_.spacings[c][a] / target[a] *
                                      static_cast<double>(f_.shapes_after_crop[c][a]));
      }
      new_shapes.push_back(s);
    }
    DVec new_median(3);
    for (size_t a = 0; a < 3; ++a) new_median[a] = numpy::median(column(new_shapes, a));
    const DVec median_t = transpose(new_median, fwd);
    const double approx_voxels = product(median_t) * static_cast<double>(in_.num_training);

    std::optional<ConfigurationPlan> fullres, lowres;
    if (median_t[0] != 1) {
      fullres = configuration(spacing_t, median_t, "3d_fullres", approx_voxels);
      double median_voxels = product(median_t);
      double patch_voxels = product(DVec(fullres->patch_size.begin(), fullres->patch_size.end()));
      DVec lowres_spacing = fullres->spacing;
      while (patch_voxels / median_voxels < k_.lowres_creation_threshold) {
        const double max_spacing = *std::max_element(lowres_spacing.begin(), lowres_spacing.end());
        bool any = false;
        for (double s : lowres_spacing) any = any || max_spacing / s > 2;
        if (any) {
          // The mask is evaluated before any element changes.
          std::vector<bool> mask;
          for (double s : lowres_spacing) mask.push_back(max_spacing / s > 2);
          for (size_t a = 0; a < 3; ++a)
            if (mask[a]) lowres_spacing[a] *= 1.03;
        } else {
          for (double& s : lowres_spacing) s *= 1.03;
        }
        DVec scaled(3);
        for (size_t a = 0; a < 3; ++a)
          scaled[a] = fullres->spacing[a] / lowres_spacing[a] * median_t[a];
        median_voxels = product(scaled);
        DVec lowres_median(3);
        for (size_t a = 0; a < 3; ++a)
          lowres_median[a] = static_cast<double>(numpy::round_half_even(scaled[a]));
        lowres = configuration(lowres_spacing, lowres_median, "3d_lowres",
                               median_voxels * static_cast<double>(in_.num_training));
        patch_voxels = 1.0;
        int64_t pv = 1;
        for (int64_t x : lowres->patch_size) pv *= x;
        patch_voxels = static_cast<double>(pv);
      }
      if (lowres && o_.rules == PlannerRules::V2_8 && product(median_t) / median_voxels < 2) {
        lowres.reset();
      }
      if (lowres) {
        lowres->batch_dice = false;
        fullres->batch_dice = true;
        lowres->next_stage = "3d_cascade_fullres";
      } else {
        fullres->batch_dice = false;
      }
    }
    ConfigurationPlan plan2d =
        configuration(DVec(spacing_t.begin() + 1, spacing_t.end()),
                      DVec(median_t.begin() + 1, median_t.end()), "2d", approx_voxels);
    plan2d.batch_dice = true;

    DVec median_spacing(3), median_shape(3);
    for (size_t a = 0; a < 3; ++a) {
      median_spacing[a] = numpy::median(column(f_.spacings, a));
      median_shape[a] = numpy::median(column(f_.shapes_after_crop, a));
    }
    p.original_median_spacing_after_transp = transpose(median_spacing, fwd);
    for (double s : transpose(median_shape, fwd)) {
      p.original_median_shape_after_transp.push_back(numpy::round_half_even(s));
    }

    auto wanted = [&](const std::string& name) {
      return o_.configurations.empty() || o_.configurations.count(name) > 0;
    };
    if (wanted("2d")) p.configurations.push_back(plan2d);
    if (lowres && wanted("3d_lowres")) p.configurations.push_back(*lowres);
    if (fullres && wanted("3d_fullres")) p.configurations.push_back(*fullres);
    p.has_cascade = lowres && fullres && wanted("3d_lowres") && wanted("3d_fullres");
    if (!p.has_cascade) {
      for (auto& c : p.configurations) c.next_stage.reset();
    }
    return p;
  }

 private:
  const Fingerprint& f_;
  const PlannerInput& in_;
  const PlannerOptions& o_;
  const PlannerConstants& k_;
};

nlohmann::ordered_json resampling_kwargs(bool is_seg, int order) {
  nlohmann::ordered_json j;
  j["is_seg"] = is_seg;
  j["order"] = order;
  j["order_z"] = 0;
  j["force_separate_z"] = nullptr;
  return j;
}

nlohmann::ordered_json configuration_to_json(const ConfigurationPlan& c, PlannerRules rules) {
  nlohmann::ordered_json j;
  j["data_identifier"] = c.data_identifier;
  j["preprocessor_name"] = "DefaultPreprocessor";
  j["batch_size"] = c.batch_size;
  j["patch_size"] = c.patch_size;
  j["median_image_size_in_voxels"] = c.median_image_size_in_voxels;
  j["spacing"] = c.spacing;
  j["normalization_schemes"] = c.normalization_schemes;
  j["use_mask_for_norm"] = c.use_mask_for_norm;
  if (rules == PlannerRules::V2_2) {
    j["UNet_class_name"] = "PlainConvUNet";
    j["UNet_base_num_features"] = c.base_num_features;
    j["n_conv_per_stage_encoder"] = c.n_conv_per_stage_encoder;
    j["n_conv_per_stage_decoder"] = c.n_conv_per_stage_decoder;
    j["num_pool_per_axis"] = c.num_pool_per_axis;
    j["pool_op_kernel_sizes"] = c.pool_op_kernel_sizes;
    j["conv_kernel_sizes"] = c.conv_kernel_sizes;
    j["unet_max_num_features"] = c.unet_max_num_features;
  }
  j["resampling_fn_data"] = "resample_data_or_seg_to_shape";
  j["resampling_fn_seg"] = "resample_data_or_seg_to_shape";
  j["resampling_fn_data_kwargs"] = resampling_kwargs(false, 3);
  j["resampling_fn_seg_kwargs"] = resampling_kwargs(true, 1);
  j["resampling_fn_probabilities"] = "resample_data_or_seg_to_shape";
  j["resampling_fn_probabilities_kwargs"] = resampling_kwargs(false, 1);
  if (rules == PlannerRules::V2_8) {
    const bool is3d = c.patch_size.size() == 3;
    nlohmann::ordered_json a;
    a["network_class_name"] = "dynamic_network_architectures.architectures.unet.PlainConvUNet";
    nlohmann::ordered_json k;
    k["n_stages"] = c.n_stages();
    k["features_per_stage"] =
        features_per_stage(c.n_stages(), c.base_num_features, c.unet_max_num_features);
    k["conv_op"] = is3d ? "torch.nn.modules.conv.Conv3d" : "torch.nn.modules.conv.Conv2d";
    k["kernel_sizes"] = c.conv_kernel_sizes;
    k["strides"] = c.pool_op_kernel_sizes;
    k["n_conv_per_stage"] = c.n_conv_per_stage_encoder;
    k["n_conv_per_stage_decoder"] = c.n_conv_per_stage_decoder;
    k["conv_bias"] = true;
    k["norm_op"] = is3d ? "torch.nn.modules.instancenorm.InstanceNorm3d"
                        : "torch.nn.modules.instancenorm.InstanceNorm2d";
    k["norm_op_kwargs"] = {{"eps", 1e-05}, {"affine", true}};
    k["dropout_op"] = nullptr;
    k["dropout_op_kwargs"] = nullptr;
    k["nonlin"] = "torch.nn.LeakyReLU";
    k["nonlin_kwargs"] = {{"inplace", true}};
    a["arch_kwargs"] = k;
    a["_kw_requires_import"] = {"conv_op", "norm_op", "dropout_op", "nonlin"};
    j["architecture"] = a;
  }
  if (c.batch_dice) j["batch_dice"] = *c.batch_dice;
  if (c.next_stage) j["next_stage"] = *c.next_stage;
  return j;
}

nlohmann::ordered_json properties_json(const IntensityProperties& p) {
  nlohmann::ordered_json j;
  j["max"] = p.max;
  j["mean"] = p.mean;
  j["median"] = p.median;
  j["min"] = p.min;
  j["percentile_00_5"] = p.percentile_00_5;
  j["percentile_99_5"] = p.percentile_99_5;
  j["std"] = p.std;
  return j;
}

}  // namespace

PlannerInput planner_input(const DatasetDescription& d) {
  PlannerInput in;
  in.dataset_name = d.name;
  in.channel_names = d.channel_names;
  in.num_labels = static_cast<int64_t>(d.labels.size());
  in.num_training = d.num_training > 0 ? d.num_training : static_cast<int64_t>(d.cases.size());
  in.image_reader_writer = d.image_reader_writer;
  return in;
}

Plans plan_experiment(const Fingerprint& fingerprint, const PlannerInput& input,
                      const PlannerOptions& options, const PlannerConstants& constants) {
  for (const auto& c : options.configurations) {
    UMAMBA_CHECK(c == "2d" || c == "3d_fullres" || c == "3d_lowres",
                 "unknown configuration \"{}\" (2d, 3d_fullres or 3d_lowres)", c);
  }
  return Planner(fingerprint, input, options, constants).run();
}

nlohmann::ordered_json plans_to_json(const Plans& p) {
  nlohmann::ordered_json j;
  j["dataset_name"] = p.dataset_name;
  j["plans_name"] = p.plans_name;
  j["original_median_spacing_after_transp"] = p.original_median_spacing_after_transp;
  j["original_median_shape_after_transp"] = p.original_median_shape_after_transp;
  j["image_reader_writer"] = p.image_reader_writer;
  j["transpose_forward"] = p.transpose_forward;
  j["transpose_backward"] = p.transpose_backward;
  j["configurations"] = nlohmann::ordered_json::object();
  for (const auto& c : p.configurations)
    j["configurations"][c.name] = configuration_to_json(c, p.rules);
  if (p.has_cascade) {
    j["configurations"]["3d_cascade_fullres"] = {{"inherits_from", "3d_fullres"},
                                                 {"previous_stage", "3d_lowres"}};
  }
  j["experiment_planner_used"] = "ExperimentPlanner";
  j["label_manager"] = "LabelManager";
  j["foreground_intensity_properties_per_channel"] = nlohmann::ordered_json::object();
  for (size_t c = 0; c < p.foreground_intensity_properties_per_channel.size(); ++c) {
    j["foreground_intensity_properties_per_channel"][std::to_string(c)] =
        properties_json(p.foreground_intensity_properties_per_channel[c]);
  }
  return j;
}

}  // namespace umamba::plan
