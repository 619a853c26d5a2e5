// Sharding a sorted list of inputs over the parts of a job: `--shard i/N`, or a SLURM job array.
//
// Method (nnU-Net's predict_from_raw_data, part_id/num_parts): the inputs are sorted and part i of
// N takes items i, i + N, i + 2N, ... (a strided split: a list sorted by name, which often tracks
// size, spreads evenly). Every item lands in exactly one part.
//
// SLURM (slurm.schedmd.com/job_array.html): each array task sees SLURM_ARRAY_TASK_ID,
// SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_STEP. Indices need not start
// at 0 (--array=2-5) and may step (--array=0-30:3), so part = (ID - MIN) / STEP and parts =
// COUNT. Arrays given as irregular lists (--array=1,4,9) have no such mapping: they are refused
// with a message asking for --shard. An explicit --shard always wins over the environment.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace umamba::pipeline {

struct Shard {
  int64_t index = 0;            // 0-based part
  int64_t count = 1;            // number of parts
  std::string source = "none";  // "flag", "slurm" or "none"

  bool active() const { return count > 1; }
  std::string name() const;  // "i/N"
};

// "i/N" with 0 <= i < N; throws Error naming the text otherwise.
Shard parse_shard(const std::string& text);

using GetEnv = std::function<const char*(const char*)>;

// The shard of a SLURM array task from the environment; count 1 (source "none") when
// SLURM_ARRAY_TASK_ID is unset. Throws Error on inconsistent values.
Shard shard_from_slurm(const GetEnv& getenv);

// `flag` non-empty: parse_shard(flag); else the SLURM environment; else the whole list.
Shard resolve_shard(const std::string& flag, const GetEnv& getenv);

// Items index, index + count, ... of `items`.
template <typename T>
std::vector<T> select_shard(const std::vector<T>& items, const Shard& shard) {
  std::vector<T> out;
  for (size_t i = static_cast<size_t>(shard.index); i < items.size();
       i += static_cast<size_t>(shard.count)) {
    out.push_back(items[i]);
  }
  return out;
}

}  // namespace umamba::pipeline
