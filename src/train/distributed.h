// Data-parallel training across GPUs and nodes: the rendezvous (who am I, how many are we, where
// is rank 0). This header is free of LibTorch; the process group, the bucketed gradient all-reduce
// and the cross-rank Dice statistics are in data_parallel.h.
//
// Method: one process per GPU (or per CPU process with Gloo), as PyTorch's DDP. Each field is
// taken from an explicit flag when given, else from torchrun's variables (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT), else from SLURM's (SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID, the first host of SLURM_JOB_NODELIST or SLURM_NODELIST, expanded from SLURM's
// compressed form such as `gpu[01-04,07],login1`). A world of 1 (nothing set) is the plain
// single-process run. The master port defaults to 29500 (torchrun's default) when no flag or
// MASTER_PORT gives one.
// Limits: the SLURM node-list syntax handled is names with bracketed ranges/lists (several
// bracket groups per name allowed); SLURM's `*count` repetition suffix is not.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace umamba::train {

// What the flags say (unset fields come from the environment).
struct DistributedOptions {
  std::string backend = "auto";  // auto (NCCL on CUDA, Gloo on the CPU), nccl, gloo
  int rank = -1;                 // -1: RANK, else SLURM_PROCID
  int world_size = 0;            // 0: WORLD_SIZE, else SLURM_NTASKS, else 1
  int local_rank = -1;           // -1: LOCAL_RANK, else SLURM_LOCALID, else the rank
  std::string master_addr;       // empty: MASTER_ADDR, else the first host of the SLURM node list
  int master_port = 0;           // 0: MASTER_PORT, else 29500
  int timeout_minutes = 60;      // collectives (and rank 0's validation, which the others await)
};

// The resolved rendezvous.
struct Rendezvous {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "single process";  // where world size and rank came from
  bool distributed() const { return world_size > 1; }
};

// Reads one environment variable (nullopt when unset or empty).
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
std::optional<std::string> process_env(const std::string& name);

// Flags, else torchrun's variables, else SLURM's (see above). Throws Error naming the missing or
// invalid variable or flag (e.g. a world size without a rank, a rank outside [0, world)).
Rendezvous resolve_rendezvous(const DistributedOptions& options,
                              const EnvLookup& env = process_env);

// SLURM's compressed host list, expanded in order: "node[01-03,07],gpu5" -> node01, node02,
// node03, node07, gpu5 (zero padding kept from the range's first bound). Throws Error on
// unbalanced brackets or a bad range.
std::vector<std::string> expand_slurm_nodelist(const std::string& list);

// Per-rank seed of the batch stream: the run's seed itself for a world of 1 (so a 1-process run is
// the plain path), else a mix of seed and rank (distinct for every rank).
uint64_t rank_seed(uint64_t seed, int rank, int world_size);

// Foreground oversampling of rank r's share of the global batch, as nnU-Net's DDP trainer splits
// it: rank r holds samples [r·b, (r+1)·b) of the global batch (b = global / W), and the samples
// forced to contain foreground are the last ones of the global batch (index ≥ round(B·(1 − p)),
// sampler.h); returns the fraction f of rank r's b samples that are forced, chosen so that the
// per-batch rule applied to b samples with f forces exactly those (its last forced_r samples).
// A world of 1 returns p unchanged.
double rank_oversample(int64_t global_batch, int world_size, int rank, double oversample);

}  // namespace umamba::train
