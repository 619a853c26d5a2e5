// `umamba evaluate`: see evaluate.h.
#include "pipeline/evaluate.h"

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join (LibTorch's bundled fmt 12 keeps it there)

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "core/build_info.h"
#include "core/error.h"
#include "core/log.h"
#include "io/atomic_file.h"
#include "io/image_io.h"
#include "metrics/instance_f1.h"
#include "metrics/label_scores.h"
#include "metrics/tolerances.h"

namespace umamba::pipeline {

namespace fs = std::filesystem;

namespace {

const char* metric_name(EvalMetric m) {
  switch (m) {
    case EvalMetric::F1:
      return "f1";
    case EvalMetric::Dsc:
      return "dsc";
    case EvalMetric::Nsd:
      return "nsd";
  }
  return "?";
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  const size_t shown = std::min<size_t>(names.size(), 10);
  for (size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > shown) out += fmt::format(" and {} more", names.size() - shown);
  return out;
}

std::map<std::string, fs::path> list_images(const fs::path& dir, const char* role) {
  if (!fs::is_directory(dir))
    fail("{} folder '{}' does not exist or is not a folder", role, dir.string());
  std::map<std::string, fs::path> out;
  std::vector<std::string> duplicates;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const fs::path& p = entry.path();
    if (p.filename().string().starts_with(".") || !io::is_supported_image(p)) continue;
    const std::string key = case_key(p);
    // The other images `umamba predict` writes beside the labels (--overlay, --probabilities).
    if (key.ends_with("_overlay") || key.ends_with("_prob")) continue;
    const auto [it, inserted] = out.emplace(key, p);
    if (!inserted)
      duplicates.push_back(it->second.filename().string() + " / " + p.filename().string());
  }
  if (!duplicates.empty())
    fail("{} folder '{}': files share a case name: {}", role, dir.string(), join_names(duplicates));
  return out;
}

double mean_of(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double std_of(const std::vector<double>& v) {  // population (ddof = 0), as numpy
  if (v.empty()) return std::nan("");
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

double median_of(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string num(double v) {
  if (std::isnan(v)) return "nan";
  return fmt::format("{:.17g}", v);
}

void write_text(const fs::path& path, const std::string& text) {
  io::AtomicOutput out(path);
  {
    std::ofstream f(out.temporary_path(), std::ios::binary);
    if (!f) fail_file(out.temporary_path().string(), "cannot open for writing");
    f << text;
    f.close();
    if (!f) fail_file(out.temporary_path().string(), "write failed (disk full?)");
  }
  out.commit();
}

// Header checks of every pair before any pixel is decoded.
void check_pairs(const std::vector<CasePair>& pairs, EvalMetric metric) {
  std::vector<std::string> problems;
  for (const CasePair& c : pairs) {
    const auto g = io::open_image(c.gt)->info();
    const auto p = io::open_image(c.pred)->info();
    const Shape& gs = g.shape;
    const Shape& ps = p.shape;
    if (gs.c != 1 || ps.c != 1) {
      problems.push_back(
          fmt::format("{}: label images need one channel (ground truth {}, "
                      "prediction {} channels)",
                      c.name, gs.c, ps.c));
      continue;
    }
    if (!(gs == ps)) {
      problems.push_back(
          fmt::format("{}: shape differs: ground truth {} vs prediction {} (CxZxYxX)", c.name,
                      to_string(gs), to_string(ps)));
      continue;
    }
    for (int a = 0; a < 3; ++a) {
      const double x = g.geometry.spacing[a], y = p.geometry.spacing[a];
      if (std::abs(x - y) > 1e-5 * std::max(std::abs(x), std::abs(y))) {
        const std::string msg =
            fmt::format("{}: spacing differs: ground truth {} vs prediction {} ([Z,Y,X])", c.name,
                        fmt::join(g.geometry.spacing, ","), fmt::join(p.geometry.spacing, ","));
        if (metric == EvalMetric::F1) {
          log::warn("{} (ignored by F1)", msg);
        } else {
          problems.push_back(msg);
        }
        break;
      }
    }
  }
  if (!problems.empty()) {
    std::string all;
    for (const auto& p : problems) all += "\n  " + p;
    fail("{} of {} case pairs do not match:{}", problems.size(), pairs.size(), all);
  }
}

nlohmann::json run_f1(const EvaluateOptions& o, const std::vector<CasePair>& pairs,
                      nlohmann::json summary) {
  metrics::F1Options fo;
  fo.threshold = metrics::Threshold::parse(o.threshold);
  fo.keep_border = o.keep_border;
  std::string csv =
      "name,true_num,pred_num,tp,fp,fn,precision,recall,f1,dice,mean_matched_iou,"
      "panoptic_quality,mean_ap,tiled\n";
  std::vector<double> f1, precision, recall, dice, pq, map;
  int64_t tp = 0, n_true = 0, n_pred = 0;
  for (const CasePair& c : pairs) {
    const Image g = io::read_image(c.gt);
    const Image p = io::read_image(c.pred);
    metrics::F1Result r;
    try {
      r = metrics::instance_f1(g, p, fo);
    } catch (const Error& e) {
      fail("{}: {}", c.name, e.what());
    }
    const auto& k = r.counts;
    csv += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", csv_field(c.name), k.n_true,
                       k.n_pred, k.tp, k.fp, k.fn, num(r.precision), num(r.recall), num(r.f1),
                       num(r.dice), num(r.mean_matched_iou), num(r.panoptic_quality),
                       num(r.mean_ap), r.tiled ? 1 : 0);
    log::info("{}: F1 {:.4f} (TP {}, cells {} true / {} predicted)", c.name, r.f1, k.tp, k.n_true,
              k.n_pred);
    f1.push_back(r.f1);
    precision.push_back(r.precision);
    recall.push_back(r.recall);
    dice.push_back(r.dice);
    pq.push_back(r.panoptic_quality);
    map.push_back(r.mean_ap);
    tp += k.tp;
    n_true += k.n_true;
    n_pred += k.n_pred;
  }
  auto stat = [](const std::vector<double>& v) {
    return nlohmann::json{{"mean", mean_of(v)}, {"std", std_of(v)}, {"median", median_of(v)}};
  };
  summary["threshold"] = o.threshold;
  summary["keep_border"] = o.keep_border;
  summary["f1"] = stat(f1);
  summary["precision"] = stat(precision);
  summary["recall"] = stat(recall);
  summary["dice"] = stat(dice);
  summary["panoptic_quality"] = stat(pq);
  summary["mean_ap_50_95"] = stat(map);
  summary["totals"] = {{"tp", tp}, {"true_num", n_true}, {"pred_num", n_pred}};
  write_text(o.output_dir / "f1_per_case.csv", csv);
  return summary;
}

nlohmann::json run_labels(const EvaluateOptions& o, const std::vector<CasePair>& pairs,
                          nlohmann::json summary) {
  const bool nsd = o.metric == EvalMetric::Nsd;
  metrics::ToleranceTable table;
  if (!o.tolerances.empty()) table = metrics::load_tolerances(o.tolerances);
  if (nsd) {
    UMAMBA_CHECK(o.tolerance || !o.tolerances.empty(),
                 "NSD needs a tolerance: --tolerance MM for every label or --tolerances FILE");
    if (o.tolerance) table.default_tolerance = *o.tolerance;
  }
  metrics::LabelScoreOptions lo;
  lo.labels = o.labels;
  if (lo.labels.empty())
    for (const auto& [l, t] : table.tolerance) lo.labels.push_back(l);
  const bool fixed_labels = !lo.labels.empty();

  // Scores per case and label; labels missing from a case (when the set is not fixed) are absent
  // from both masks and get the convention's value afterwards.
  std::map<std::string, std::map<int64_t, metrics::LabelScore>> scores;
  std::set<int64_t> all_labels(lo.labels.begin(), lo.labels.end());
  for (const CasePair& c : pairs) {
    const Image g = io::read_image(c.gt);
    const Image p = io::read_image(c.pred);
    std::vector<metrics::LabelScore> r;
    try {
      if (nsd) {
        r = metrics::surface_dice_per_label(
            g, p, g.geometry().spacing, [&](int64_t l) { return table.at(l); }, lo);
      } else {
        r = metrics::dice_per_label(g, p, lo);
      }
    } catch (const Error& e) {
      fail("{}: {}", c.name, e.what());
    }
    auto& per = scores[c.name];
    for (const auto& s : r) {
      per[s.label] = s;
      all_labels.insert(s.label);
    }
    log::info("{}: {} labels scored", c.name, r.size());
  }
  std::string csv = nsd ? "name,label,label_name,gt_voxels,pred_voxels,dsc,nsd,tolerance\n"
                        : "name,label,label_name,gt_voxels,pred_voxels,dsc\n";
  std::map<int64_t, std::vector<double>> dsc, nsdv;
  for (const CasePair& c : pairs) {
    auto& per = scores[c.name];
    for (int64_t l : all_labels) {
      metrics::LabelScore s;
      if (auto it = per.find(l); it != per.end()) {
        s = it->second;
      } else {  // absent from both masks of this case
        s.label = l;
        s.dsc = lo.both_absent;
        s.nsd = lo.both_absent;
        if (nsd) s.tolerance = table.at(l);
      }
      dsc[l].push_back(s.dsc);
      if (nsd) nsdv[l].push_back(s.nsd);
      csv += fmt::format("{},{},{},{},{},{}", csv_field(c.name), l, csv_field(table.name(l)),
                         s.gt_voxels, s.pred_voxels, num(s.dsc));
      csv += nsd ? fmt::format(",{},{}\n", num(s.nsd), num(s.tolerance)) : std::string("\n");
    }
  }
  (void)fixed_labels;
  nlohmann::json labels = nlohmann::json::array();
  std::vector<double> dsc_means, nsd_means;
  for (int64_t l : all_labels) {
    nlohmann::json e{{"label", l},
                     {"name", table.name(l)},
                     {"cases", dsc[l].size()},
                     {"dsc", {{"mean", mean_of(dsc[l])}, {"std", std_of(dsc[l])}}}};
    dsc_means.push_back(mean_of(dsc[l]));
    if (nsd) {
      e["nsd"] = {{"mean", mean_of(nsdv[l])}, {"std", std_of(nsdv[l])}};
      e["tolerance"] = table.at(l);
      nsd_means.push_back(mean_of(nsdv[l]));
    }
    labels.push_back(e);
  }
  summary["labels"] = labels;
  summary["absent_from_both"] = lo.both_absent;
  // The mean of the per-label means (U-Mamba's dataframe.mean().mean()).
  summary["mean_over_labels"]["dsc"] = mean_of(dsc_means);
  if (nsd) {
    summary["mean_over_labels"]["nsd"] = mean_of(nsd_means);
    summary["tolerance_unit"] = table.unit;
    if (!o.tolerances.empty()) summary["tolerances_file"] = o.tolerances.string();
  }
  write_text(o.output_dir / (std::string(metric_name(o.metric)) + "_per_case.csv"), csv);
  return summary;
}

}  // namespace

EvalMetric eval_metric_from_name(const std::string& name) {
  if (name == "f1") return EvalMetric::F1;
  if (name == "dsc") return EvalMetric::Dsc;
  if (name == "nsd") return EvalMetric::Nsd;
  fail("unknown metric '{}': use f1, dsc or nsd", name);
}

std::string case_key(const fs::path& file) {
  std::string name = file.filename().string();
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* ext : {".nii.gz", ".ome.tiff", ".ome.tif"}) {
    const std::string e(ext);
    if (lower.size() > e.size() && lower.ends_with(e)) {
      name.resize(name.size() - e.size());
      return name.ends_with("_label") ? name.substr(0, name.size() - 6) : name;
    }
  }
  const auto dot = name.rfind('.');
  if (dot != std::string::npos && dot > 0) name.resize(dot);
  if (name.ends_with("_label")) name.resize(name.size() - 6);
  return name;
}

std::vector<CasePair> pair_cases(const fs::path& gt_dir, const fs::path& pred_dir) {
  const auto gts = list_images(gt_dir, "ground-truth");
  const auto preds = list_images(pred_dir, "prediction");
  std::vector<std::string> missing_pred, missing_gt;
  std::vector<CasePair> out;
  for (const auto& [key, g] : gts) {
    const auto it = preds.find(key);
    if (it == preds.end()) {
      missing_pred.push_back(g.filename().string());
    } else {
      out.push_back({key, g, it->second});
    }
  }
  for (const auto& [key, p] : preds)
    if (!gts.count(key)) missing_gt.push_back(p.filename().string());
  std::string problems;
  if (!missing_pred.empty())
    problems += fmt::format("\n  {} ground truths have no prediction in '{}': {}",
                            missing_pred.size(), pred_dir.string(), join_names(missing_pred));
  if (!missing_gt.empty())
    problems += fmt::format("\n  {} predictions have no ground truth in '{}': {}",
                            missing_gt.size(), gt_dir.string(), join_names(missing_gt));
  if (!problems.empty()) fail("cannot pair the cases:{}", problems);
  if (out.empty())
    fail("no image files found in '{}' and '{}'", gt_dir.string(), pred_dir.string());
  return out;
}

nlohmann::json run_evaluate(const EvaluateOptions& o) {
  if (o.metric != EvalMetric::F1) {
    // Validate early: a bad tolerance table should fail before any image is read.
    if (!o.tolerances.empty()) (void)metrics::load_tolerances(o.tolerances);
  } else {
    (void)metrics::Threshold::parse(o.threshold);
  }
  const auto pairs = pair_cases(o.gt_dir, o.pred_dir);
  check_pairs(pairs, o.metric);
  std::error_code ec;
  fs::create_directories(o.output_dir, ec);
  if (ec) fail("cannot create the output folder '{}': {}", o.output_dir.string(), ec.message());
  nlohmann::json summary{
      {"metric", metric_name(o.metric)},
      {"cases", pairs.size()},
      {"gt_dir", o.gt_dir.string()},
      {"pred_dir", o.pred_dir.string()},
      {"umamba", {{"version", build_info::kVersion}, {"revision", build_info::kGitRevision}}}};
  summary = o.metric == EvalMetric::F1 ? run_f1(o, pairs, summary) : run_labels(o, pairs, summary);
  write_text(o.output_dir / (std::string(metric_name(o.metric)) + "_summary.json"),
             summary.dump(2) + "\n");
  return summary;
}

std::string format_evaluate_summary(const nlohmann::json& s) {
  std::string out;
  const std::string metric = s.at("metric");
  if (metric == "f1") {
    auto ms = [&](const char* k) {
      return fmt::format("{:.4f} ± {:.4f}", s[k]["mean"].get<double>(), s[k]["std"].get<double>());
    };
    out += fmt::format("instance F1 at IoU >= {} over {} images{}\n",
                       s["threshold"].get<std::string>(), s["cases"].get<size_t>(),
                       s["keep_border"].get<bool>() ? " (border cells kept)" : "");
    out += fmt::format("  F1         {}   (median {:.4f})\n", ms("f1"),
                       s["f1"]["median"].get<double>());
    out += fmt::format("  precision  {}\n  recall     {}\n", ms("precision"), ms("recall"));
    out += fmt::format("  dice (fg)  {}\n  PQ         {}\n  mAP 50-95  {}\n", ms("dice"),
                       ms("panoptic_quality"), ms("mean_ap_50_95"));
    return out;
  }
  const bool nsd = metric == "nsd";
  out += fmt::format("{} over {} cases (mean ± std over cases)\n", nsd ? "DSC and NSD" : "DSC",
                     s["cases"].get<size_t>());
  out += fmt::format("  {:>6}  {:<22} {:<17}{}\n", "label", "name", "DSC",
                     nsd ? fmt::format("NSD (tolerance {})", s.value("tolerance_unit", "")) : "");
  for (const auto& l : s["labels"]) {
    std::string line = fmt::format("  {:>6}  {:<22} {:.4f} ± {:.4f}", l["label"].get<int64_t>(),
                                   l["name"].get<std::string>(), l["dsc"]["mean"].get<double>(),
                                   l["dsc"]["std"].get<double>());
    if (nsd)
      line += fmt::format("  {:.4f} ± {:.4f}  ({:g})", l["nsd"]["mean"].get<double>(),
                          l["nsd"]["std"].get<double>(), l["tolerance"].get<double>());
    out += line + "\n";
  }
  out += fmt::format("  {:>6}  {:<22} {:.4f}", "mean", "(of the label means)",
                     s["mean_over_labels"]["dsc"].get<double>());
  if (nsd) out += fmt::format("           {:.4f}", s["mean_over_labels"]["nsd"].get<double>());
  return out + "\n";
}

}  // namespace umamba::pipeline
