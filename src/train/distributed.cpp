// Rendezvous from flags, torchrun's or SLURM's variables (see distributed.h).
#include "train/distributed.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/error.h"
#include "train/augment.h"

namespace umamba::train {

namespace {

// A whole decimal integer (optional leading minus), else nullopt.
std::optional<long long> parse_int(const std::string& text) {
  if (text.empty()) return std::nullopt;
  size_t i = text[0] == '-' ? 1 : 0;
  if (i == text.size()) return std::nullopt;
  long long v = 0;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    if (v > (std::numeric_limits<long long>::max() - 9) / 10) return std::nullopt;
    v = v * 10 + (text[i] - '0');
  }
  return text[0] == '-' ? -v : v;
}

// An integer field: the flag when set (flag_set), else the first of `vars` that is set.
struct IntField {
  std::optional<long long> value;
  std::string from;  // "--flag" or the variable's name
};

IntField int_field(bool flag_set, long long flag_value, const std::string& flag_name,
                   const std::vector<std::string>& vars, const EnvLookup& env) {
  if (flag_set) return {flag_value, flag_name};
  for (const auto& name : vars) {
    if (auto text = env(name)) {
      auto v = parse_int(*text);
      UMAMBA_CHECK(v.has_value(), "environment variable {}='{}' is not an integer", name, *text);
      return {v, name};
    }
  }
  return {};
}

// Expands one comma-free item with bracket groups ("n[1-2]-ib[3,5]").
void expand_item(const std::string& item, std::vector<std::string>& out) {
  const size_t open = item.find('[');
  if (open == std::string::npos) {
    UMAMBA_CHECK(item.find(']') == std::string::npos, "SLURM node list: stray ']' in '{}'", item);
    out.push_back(item);
    return;
  }
  const size_t close = item.find(']', open);
  UMAMBA_CHECK(close != std::string::npos, "SLURM node list: '[' without ']' in '{}'", item);
  const std::string prefix = item.substr(0, open);
  const std::string body = item.substr(open + 1, close - open - 1);
  const std::string rest = item.substr(close + 1);
  UMAMBA_CHECK(prefix.find(']') == std::string::npos, "SLURM node list: stray ']' in '{}'", item);
  UMAMBA_CHECK(!body.empty(), "SLURM node list: empty brackets in '{}'", item);
  size_t start = 0;
  while (start <= body.size()) {
    size_t comma = body.find(',', start);
    if (comma == std::string::npos) comma = body.size();
    const std::string part = body.substr(start, comma - start);
    const size_t dash = part.find('-');
    const std::string lo_text = dash == std::string::npos ? part : part.substr(0, dash);
    const std::string hi_text = dash == std::string::npos ? part : part.substr(dash + 1);
    const auto lo = parse_int(lo_text), hi = parse_int(hi_text);
    UMAMBA_CHECK(lo && hi && *lo >= 0 && *hi >= *lo && lo_text[0] != '-' && hi_text[0] != '-',
                 "SLURM node list: bad range '{}' in '{}'", part, item);
    UMAMBA_CHECK(*hi - *lo < 1000000, "SLURM node list: range '{}' in '{}' is too long", part,
                 item);
    const size_t width = lo_text.size();
    for (long long v = *lo; v <= *hi; ++v) {
      std::string digits = std::to_string(v);
      if (digits.size() < width) digits.insert(0, width - digits.size(), '0');
      expand_item(prefix + digits + rest, out);
    }
    start = comma + 1;
  }
}

}  // namespace

std::optional<std::string> process_env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::vector<std::string> expand_slurm_nodelist(const std::string& list) {
  std::vector<std::string> out;
  int depth = 0;
  std::string item;
  auto flush = [&] {
    if (!item.empty()) expand_item(item, out);
    item.clear();
  };
  for (char ch : list) {
    if (ch == '[') ++depth;
    if (ch == ']') {
      UMAMBA_CHECK(depth > 0, "SLURM node list '{}': ']' without '['", list);
      --depth;
    }
    UMAMBA_CHECK(depth <= 1, "SLURM node list '{}': nested brackets", list);
    if (ch == ',' && depth == 0) {
      flush();
    } else if (ch != ' ') {
      item += ch;
    }
  }
  UMAMBA_CHECK(depth == 0, "SLURM node list '{}': '[' without ']'", list);
  flush();
  return out;
}

Rendezvous resolve_rendezvous(const DistributedOptions& o, const EnvLookup& env) {
  UMAMBA_CHECK(o.backend == "auto" || o.backend == "nccl" || o.backend == "gloo",
               "--dist-backend '{}': expected auto, nccl or gloo", o.backend);
  Rendezvous r;
  const IntField world = int_field(o.world_size > 0, o.world_size, "--world-size",
                                   {"WORLD_SIZE", "SLURM_NTASKS"}, env);
  if (!world.value) {
    UMAMBA_CHECK(o.rank <= 0,
                 "--rank {} given without a world size: pass --world-size (or set WORLD_SIZE, or "
                 "run under srun, which sets SLURM_NTASKS)",
                 o.rank);
    return r;  // a single process
  }
  UMAMBA_CHECK(*world.value >= 1 && *world.value <= 1000000, "world size {} (from {}): at least 1",
               *world.value, world.from);
  r.world_size = static_cast<int>(*world.value);
  if (r.world_size == 1) {
    r.source = world.from + " = 1";
    return r;
  }
  const IntField rank = int_field(o.rank >= 0, o.rank, "--rank", {"RANK", "SLURM_PROCID"}, env);
  UMAMBA_CHECK(rank.value.has_value(),
               "world size {} (from {}) but no rank: pass --rank, or set RANK (torchrun) or "
               "SLURM_PROCID (srun)",
               r.world_size, world.from);
  UMAMBA_CHECK(*rank.value >= 0 && *rank.value < r.world_size,
               "rank {} (from {}) is outside [0, {}) for world size {} (from {})", *rank.value,
               rank.from, r.world_size, r.world_size, world.from);
  r.rank = static_cast<int>(*rank.value);
  const IntField local = int_field(o.local_rank >= 0, o.local_rank, "--local-rank",
                                   {"LOCAL_RANK", "SLURM_LOCALID"}, env);
  if (local.value) {
    UMAMBA_CHECK(*local.value >= 0 && *local.value < 1024, "local rank {} (from {}): expected 0..",
                 *local.value, local.from);
    r.local_rank = static_cast<int>(*local.value);
  } else {
    r.local_rank = r.rank;  // one node: the local rank is the rank
  }
  if (!o.master_addr.empty()) {
    r.master_addr = o.master_addr;
  } else if (auto a = env("MASTER_ADDR")) {
    r.master_addr = *a;
  } else {
    auto nodes = env("SLURM_JOB_NODELIST");
    if (!nodes) nodes = env("SLURM_NODELIST");
    UMAMBA_CHECK(nodes.has_value(),
                 "world size {} (from {}) but no master address: pass --master-addr, or set "
                 "MASTER_ADDR, or run under SLURM (SLURM_JOB_NODELIST gives the first host)",
                 r.world_size, world.from);
    const auto hosts = expand_slurm_nodelist(*nodes);
    UMAMBA_CHECK(!hosts.empty(), "SLURM_JOB_NODELIST='{}' names no host", *nodes);
    r.master_addr = hosts.front();
  }
  const IntField port =
      int_field(o.master_port > 0, o.master_port, "--master-port", {"MASTER_PORT"}, env);
  if (port.value) {
    UMAMBA_CHECK(*port.value >= 1 && *port.value <= 65535,
                 "master port {} (from {}): expected 1..65535", *port.value, port.from);
    r.master_port = static_cast<int>(*port.value);
  }
  r.source = world.from == "--world-size"
                 ? std::string("flags")
                 : (world.from == "WORLD_SIZE" ? std::string("torchrun variables")
                                               : std::string("SLURM variables"));
  return r;
}

uint64_t rank_seed(uint64_t seed, int rank, int world_size) {
  if (world_size <= 1) return seed;
  return mix_seed(seed, 0xdd90000000000000ULL, static_cast<uint64_t>(rank),
                  static_cast<uint64_t>(world_size));
}

double rank_oversample(int64_t global_batch, int world_size, int rank, double oversample) {
  if (world_size <= 1) return oversample;
  UMAMBA_CHECK(global_batch % world_size == 0 && rank >= 0 && rank < world_size,
               "oversampling split: rank {} of {} over a batch of {}", rank, world_size,
               global_batch);
  const int64_t b = global_batch / world_size;
  // The sampler's rule (nnU-Net): sample j of B is forced when j >= round(B (1 - p)), NumPy's
  // round (half to even, as std::nearbyint in the default rounding mode).
  const auto first_forced =
      static_cast<int64_t>(std::nearbyint(static_cast<double>(global_batch) * (1.0 - oversample)));
  const int64_t lo = static_cast<int64_t>(rank) * b, hi = lo + b;
  const int64_t forced = std::clamp<int64_t>(hi - std::max(lo, first_forced), 0, b);
  return static_cast<double>(forced) / static_cast<double>(b);
}

}  // namespace umamba::train
