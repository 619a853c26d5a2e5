// Data-parallel training: rendezvous parsing (flags, torchrun, SLURM, compressed node lists,
// errors), bucket assignment, the bucketed gradient all-reduce and the cross-rank Dice sum against
// plain references (two ranks as two threads of this process over Gloo), and two `umamba train`
// processes on localhost against one process fed the same samples.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "dist_test_util.h"
#include "train/data_parallel.h"
#include "train/distributed.h"
#include "train/loss.h"
#include "train/sampler.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace umamba::train {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using namespace testing;  // NOLINT: the test helpers

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Train_Distributed, nothing_set_is_a_single_process) {
  const Rendezvous r = resolve_rendezvous({}, env_of({}));
  EXPECT_EQ(r.world_size, 1);
  EXPECT_EQ(r.rank, 0);
  EXPECT_FALSE(r.distributed());
  // WORLD_SIZE=1 too.
  EXPECT_FALSE(resolve_rendezvous({}, env_of({{"WORLD_SIZE", "1"}})).distributed());
}

TEST(Train_Distributed, torchrun_variables) {
  const Rendezvous r =
      resolve_rendezvous({}, env_of({{"RANK", "5"},
                                     {"WORLD_SIZE", "8"},
                                     {"LOCAL_RANK", "1"},
                                     {"MASTER_ADDR", "node7"},
                                     {"MASTER_PORT", "29777"},
                                     // SLURM's are ignored when torchrun's are present.
                                     {"SLURM_PROCID", "0"},
                                     {"SLURM_NTASKS", "2"},
                                     {"SLURM_JOB_NODELIST", "other[1-2]"}}));
  EXPECT_EQ(r.rank, 5);
  EXPECT_EQ(r.world_size, 8);
  EXPECT_EQ(r.local_rank, 1);
  EXPECT_EQ(r.master_addr, "node7");
  EXPECT_EQ(r.master_port, 29777);
  EXPECT_EQ(r.source, "torchrun variables");
}

TEST(Train_Distributed, slurm_variables_with_a_compressed_node_list) {
  const Rendezvous r =
      resolve_rendezvous({}, env_of({{"SLURM_PROCID", "6"},
                                     {"SLURM_NTASKS", "8"},
                                     {"SLURM_LOCALID", "2"},
                                     {"SLURM_JOB_NODELIST", "gpu[07-08,11],login1"}}));
  EXPECT_EQ(r.rank, 6);
  EXPECT_EQ(r.world_size, 8);
  EXPECT_EQ(r.local_rank, 2);
  EXPECT_EQ(r.master_addr, "gpu07");
  EXPECT_EQ(r.master_port, 29500);  // torchrun's default
  EXPECT_EQ(r.source, "SLURM variables");
  // SLURM_NODELIST when SLURM_JOB_NODELIST is absent; MASTER_PORT still applies.
  const Rendezvous s = resolve_rendezvous({}, env_of({{"SLURM_PROCID", "1"},
                                                      {"SLURM_NTASKS", "2"},
                                                      {"SLURM_NODELIST", "n5"},
                                                      {"MASTER_PORT", "1234"}}));
  EXPECT_EQ(s.master_addr, "n5");
  EXPECT_EQ(s.master_port, 1234);
  EXPECT_EQ(s.local_rank, 1);  // no local id: the rank
}

TEST(Train_Distributed, flags_override_the_environment) {
  DistributedOptions o;
  o.rank = 1;
  o.world_size = 2;
  o.local_rank = 0;
  o.master_addr = "10.0.0.1";
  o.master_port = 40000;
  const Rendezvous r = resolve_rendezvous(
      o, env_of({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "x"}, {"MASTER_PORT", "1"}}));
  EXPECT_EQ(r.rank, 1);
  EXPECT_EQ(r.world_size, 2);
  EXPECT_EQ(r.local_rank, 0);
  EXPECT_EQ(r.master_addr, "10.0.0.1");
  EXPECT_EQ(r.master_port, 40000);
  EXPECT_EQ(r.source, "flags");
  // A flag for one field, the environment for the rest.
  DistributedOptions only_rank;
  only_rank.rank = 2;
  const Rendezvous m = resolve_rendezvous(
      only_rank, env_of({{"RANK", "0"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "h"}}));
  EXPECT_EQ(m.rank, 2);
  EXPECT_EQ(m.world_size, 4);
}

TEST(Train_Distributed, errors_name_what_is_missing) {
  auto msg = [](const DistributedOptions& o, std::map<std::string, std::string> env) {
    return error_of([&] { resolve_rendezvous(o, env_of(env)); });
  };
  std::string e = msg({}, {{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}});
  EXPECT_NE(e.find("no rank"), std::string::npos) << e;
  EXPECT_NE(e.find("RANK"), std::string::npos) << e;
  EXPECT_NE(e.find("SLURM_PROCID"), std::string::npos) << e;
  e = msg({}, {{"WORLD_SIZE", "2"}, {"RANK", "1"}});
  EXPECT_NE(e.find("master address"), std::string::npos) << e;
  EXPECT_NE(e.find("MASTER_ADDR"), std::string::npos) << e;
  e = msg({}, {{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "h"}});
  EXPECT_NE(e.find("outside [0, 2)"), std::string::npos) << e;
  EXPECT_NE(e.find("RANK"), std::string::npos) << e;
  e = msg({}, {{"WORLD_SIZE", "two"}});
  EXPECT_NE(e.find("WORLD_SIZE='two'"), std::string::npos) << e;
  e = msg({}, {{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}});
  EXPECT_NE(e.find("master port 70000"), std::string::npos) << e;
  DistributedOptions bad_backend;
  bad_backend.backend = "mpi";
  e = msg(bad_backend, {});
  EXPECT_NE(e.find("--dist-backend 'mpi'"), std::string::npos) << e;
  DistributedOptions rank_only;
  rank_only.rank = 1;
  e = msg(rank_only, {});
  EXPECT_NE(e.find("--world-size"), std::string::npos) << e;
}

TEST(Train_Distributed, slurm_node_lists_expand_in_order) {
  using V = std::vector<std::string>;
  EXPECT_EQ(expand_slurm_nodelist("node[01-04,07]"),
            (V{"node01", "node02", "node03", "node04", "node07"}));
  EXPECT_EQ(expand_slurm_nodelist("a,b[1-2],c"), (V{"a", "b1", "b2", "c"}));
  EXPECT_EQ(expand_slurm_nodelist("gpu[008-010]"), (V{"gpu008", "gpu009", "gpu010"}));
  EXPECT_EQ(expand_slurm_nodelist("n[1-2]-ib[3,5]"), (V{"n1-ib3", "n1-ib5", "n2-ib3", "n2-ib5"}));
  EXPECT_EQ(expand_slurm_nodelist("single"), (V{"single"}));
  EXPECT_EQ(expand_slurm_nodelist("x[9-10]"), (V{"x9", "x10"}));
  for (const char* bad : {"node[1-", "node[3-1]", "node]1[", "node[]", "node[a-b]", "n[[1]]"}) {
    const std::string e = error_of([&] { expand_slurm_nodelist(bad); });
    EXPECT_NE(e.find("SLURM node list"), std::string::npos) << bad << ": " << e;
  }
}

TEST(Train_Distributed, rank_seeds_are_distinct_and_one_process_keeps_the_seed) {
  EXPECT_EQ(rank_seed(12345, 0, 1), 12345u);
  std::set<uint64_t> seen;
  for (int r = 0; r < 16; ++r) seen.insert(rank_seed(12345, r, 16));
  EXPECT_EQ(seen.size(), 16u);
  EXPECT_NE(rank_seed(12345, 0, 2), rank_seed(12346, 0, 2));
}

TEST(Train_Distributed, rank_oversampling_forces_the_global_batch_samples) {
  // Reference: the sampler's own rule on the global batch, cut into the ranks' contiguous shares.
  EXPECT_EQ(rank_oversample(12, 1, 0, 0.33), 0.33);
  EXPECT_EQ(rank_oversample(12, 2, 0, 0.33), 0.0);        // samples 0..5: none forced
  EXPECT_EQ(rank_oversample(12, 2, 1, 0.33), 4.0 / 6.0);  // samples 6..11: 8..11 forced
  for (int64_t world : {2, 3, 4, 8}) {
    for (int64_t b = 1; b <= 12; ++b) {
      const int64_t B = b * world;
      for (double p : {0.0, 0.1, 0.33, 0.5, 0.66, 0.9, 1.0}) {
        int64_t total = 0;
        for (int r = 0; r < world; ++r) {
          const double f = rank_oversample(B, static_cast<int>(world), r, p);
          for (int64_t j = 0; j < b; ++j) {
            const bool local = force_foreground(j, b, f);
            const bool global = force_foreground(r * b + j, B, p);
            EXPECT_EQ(local, global)
                << "B " << B << " W " << world << " rank " << r << " p " << p << " sample " << j;
            total += local ? 1 : 0;
          }
        }
        int64_t want = 0;
        for (int64_t g = 0; g < B; ++g) want += force_foreground(g, B, p) ? 1 : 0;
        EXPECT_EQ(total, want) << "B " << B << " W " << world << " p " << p;
      }
    }
  }
}

// CI failed once with rank 0's rendezvous refused (EADDRINUSE): the test's port was one the kernel
// had handed out for bind(0), and a test running beside it took that ephemeral port again before
// rank 0 listened. The tests' ports now come from below the ephemeral range, and a taken port is
// recognised from rank 0's message so the launch is retried on another.
TEST(Train_Distributed, regression_test_ports_avoid_the_ephemeral_range) {
  int low = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low;
  std::set<int> seen;
  for (int i = 0; i < 20; ++i) {
    const int port = free_port();
    EXPECT_GE(port, 1024);
    if (low > 11000) {
      EXPECT_LT(port, low);
    }
    seen.insert(port);
  }
  EXPECT_GT(seen.size(), 10u);  // drawn at random, not one port over and over
  // A port someone listens on is refused with the message port_was_taken looks for.
  const int busy = free_port();
  Rendezvous first;
  first.rank = 0;
  first.world_size = 1;
  first.master_addr = "127.0.0.1";
  first.master_port = busy;
  ProcessGroup holder(first, "gloo", torch::kCPU, std::chrono::seconds(10));
  Rendezvous second = first;
  second.world_size = 2;
  try {
    ProcessGroup clash(second, "gloo", torch::kCPU, std::chrono::seconds(2));
    ADD_FAILURE() << "a second rank 0 on port " << busy << " was not refused";
  } catch (const std::exception& e) {
    EXPECT_TRUE(port_was_taken(e.what())) << e.what();
    EXPECT_NE(std::string(e.what()).find("port is free"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(port_was_taken("rank 0 of 2: the output folder already holds a training run"));
}

TEST(Train_Distributed, bucket_assignment_reverse_order_with_a_size_cap) {
  // Reference: walk the parameters from the last, close a bucket once it reaches the cap.
  torch::manual_seed(3);
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 1 + static_cast<int>(torch::randint(0, 40, {1}).item<int64_t>());
    std::vector<int64_t> bytes;
    for (int i = 0; i < n; ++i) bytes.push_back(torch::randint(1, 1000, {1}).item<int64_t>());
    const int64_t cap = torch::randint(1, 3000, {1}).item<int64_t>();
    const auto buckets = assign_buckets(bytes, cap);
    // Every index once, in descending order overall.
    std::vector<size_t> order;
    for (const auto& b : buckets) {
      ASSERT_FALSE(b.empty());
      order.insert(order.end(), b.begin(), b.end());
    }
    ASSERT_EQ(order.size(), bytes.size());
    for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], bytes.size() - 1 - i);
    for (size_t b = 0; b < buckets.size(); ++b) {
      int64_t sum = 0;
      for (size_t k : buckets[b]) sum += bytes[k];
      if (b + 1 < buckets.size()) {
        EXPECT_GE(sum, cap);                             // closed because full
        EXPECT_LT(sum - bytes[buckets[b].back()], cap);  // not earlier
      } else {
        EXPECT_TRUE(sum >= cap ? sum - bytes[buckets[b].back()] < cap : true);
      }
    }
  }
  EXPECT_EQ(assign_buckets({100}, 25LL << 20).size(), 1u);
}

// Runs fn(rank, group) on two threads, each with its own Gloo process group on localhost.
void with_two_ranks(const std::function<void(int, ProcessGroup&)>& fn) {
  std::vector<std::string> errors(2);
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int port = free_port();
    std::vector<std::thread> threads;
    errors.assign(2, "");
    for (int rank = 0; rank < 2; ++rank) {
      threads.emplace_back([&, rank] {
        try {
          Rendezvous r;
          r.rank = rank;
          r.world_size = 2;
          r.local_rank = rank;
          r.master_addr = "127.0.0.1";
          r.master_port = port;
          ProcessGroup group(r, "gloo", torch::kCPU, std::chrono::seconds(60));
          fn(rank, group);
        } catch (const std::exception& e) {
          errors[static_cast<size_t>(rank)] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    if (!port_was_taken(errors[0])) break;  // else another test took the port: a new one
  }
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

// A small model with one parameter the loss never uses.
struct Mlp : torch::nn::Module {
  torch::nn::Linear a{nullptr}, b{nullptr}, unused{nullptr};
  Mlp() {
    a = register_module("a", torch::nn::Linear(6, 16));
    unused = register_module("unused", torch::nn::Linear(3, 3));
    b = register_module("b", torch::nn::Linear(16, 4));
  }
  torch::Tensor forward(const torch::Tensor& x) { return b(torch::tanh(a(x))); }
};

// The gradient two ranks should agree on: the mean of each rank's own gradient of mean(f(x)^2),
// every rank starting from init's weights. Parameters without a gradient stay undefined.
template <typename Module>
std::vector<torch::Tensor> mean_gradient_of_two_ranks(const Module& init, const torch::Tensor& x0,
                                                      const torch::Tensor& x1) {
  std::vector<torch::Tensor> sum;
  for (const torch::Tensor* x : {&x0, &x1}) {
    auto m = std::make_shared<Module>();
    {
      torch::NoGradGuard ng;
      for (size_t i = 0; i < m->parameters().size(); ++i)
        m->parameters()[i].copy_(init.parameters()[i]);
    }
    torch::AutoGradMode on(true);
    m->forward(*x).pow(2).mean().backward();
    std::vector<torch::Tensor> g;
    for (const auto& p : m->parameters())
      g.push_back(p.grad().defined() ? p.grad() : torch::Tensor());
    if (sum.empty()) {
      sum = g;
    } else {
      for (size_t i = 0; i < g.size(); ++i)
        if (g[i].defined()) sum[i] = sum[i] + g[i];
    }
  }
  for (auto& t : sum)
    if (t.defined()) t = t / 2;
  return sum;
}

TEST(Train_Distributed, bucketed_all_reduce_averages_gradients_like_a_reference) {
  torch::manual_seed(11);
  // Per rank and step, its inputs; the reference gradient is the mean of the two ranks' own.
  std::vector<std::vector<torch::Tensor>> inputs(2);
  for (int r = 0; r < 2; ++r)
    for (int step = 0; step < 3; ++step) inputs[r].push_back(torch::randn({5, 6}));
  auto init = std::make_shared<Mlp>();
  auto reference = [&](int step) {
    return mean_gradient_of_two_ranks(*init, inputs[0][step], inputs[1][step]);
  };
  std::vector<std::vector<torch::Tensor>> expected;
  for (int step = 0; step < 3; ++step) expected.push_back(reference(step));

  std::vector<std::vector<std::vector<torch::Tensor>>> got(2);
  std::vector<int64_t> buckets(2), overlapped(2);
  with_two_ranks([&](int rank, ProcessGroup& group) {
    auto m = std::make_shared<Mlp>();
    {
      torch::NoGradGuard ng;
      // Different weights on rank 1: the broadcast must replace them with rank 0's.
      for (size_t i = 0; i < m->parameters().size(); ++i)
        m->parameters()[i].copy_(rank == 0 ? init->parameters()[i]
                                           : torch::randn_like(init->parameters()[i]));
    }
    broadcast_module_state(group, m->parameters(), m->buffers());
    GradientReducer reducer(m->parameters(), group, /*bucket_bytes=*/64);
    buckets[static_cast<size_t>(rank)] = static_cast<int64_t>(reducer.bucket_count());
    for (int step = 0; step < 3; ++step) {
      for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
      reducer.prepare();
      m->forward(inputs[static_cast<size_t>(rank)][static_cast<size_t>(step)])
          .pow(2)
          .mean()
          .backward();
      reducer.finish();
      if (step == 2) overlapped[static_cast<size_t>(rank)] = reducer.launched_in_backward();
      std::vector<torch::Tensor> g;
      for (const auto& p : m->parameters())
        g.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
      got[static_cast<size_t>(rank)].push_back(g);
    }
  });
  EXPECT_GT(buckets[0], 2);
  EXPECT_GT(overlapped[0], 0) << "no bucket was sent during backward";
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(got[r].size(), 3u);
    for (int step = 0; step < 3; ++step) {
      ASSERT_EQ(got[r][step].size(), expected[step].size());
      for (size_t i = 0; i < expected[step].size(); ++i) {
        ASSERT_EQ(got[r][step][i].defined(), expected[step][i].defined())
            << "rank " << r << " step " << step << " parameter " << i;
        if (!expected[step][i].defined()) continue;
        EXPECT_TRUE(torch::allclose(got[r][step][i], expected[step][i], 1e-5, 1e-7))
            << "rank " << r << " step " << step << " parameter " << i;
        // Both ranks hold exactly the same gradient.
        if (r == 1) {
          EXPECT_TRUE(torch::equal(got[0][step][i], got[1][step][i]));
        }
      }
    }
  }
}

// Registers its last layer first: reverse registration order is the opposite of the order in
// which the backward pass produces the gradients.
struct HeadFirst : torch::nn::Module {
  torch::nn::Linear head{nullptr}, body{nullptr};
  HeadFirst() {
    head = register_module("head", torch::nn::Linear(16, 4));
    body = register_module("body", torch::nn::Linear(6, 16));
  }
  torch::Tensor forward(const torch::Tensor& x) { return head(torch::tanh(body(x))); }
};

TEST(Train_Distributed, buckets_follow_the_observed_gradient_order) {
  torch::manual_seed(12);
  std::vector<torch::Tensor> inputs;
  for (int i = 0; i < 6; ++i) inputs.push_back(torch::randn({5, 6}));
  auto init = std::make_shared<HeadFirst>();
  auto reference = [&](int step) {
    return mean_gradient_of_two_ranks(*init, inputs[static_cast<size_t>(2 * step)],
                                      inputs[static_cast<size_t>(2 * step + 1)]);
  };
  for (const BucketOrder order : {BucketOrder::Registration, BucketOrder::Observed}) {
    std::vector<int64_t> sent(2), count(2);
    std::vector<std::vector<std::vector<size_t>>> layout(2);
    std::vector<std::vector<std::vector<torch::Tensor>>> got(2);
    with_two_ranks([&](int rank, ProcessGroup& group) {
      auto m = std::make_shared<HeadFirst>();
      {
        torch::NoGradGuard ng;
        for (size_t i = 0; i < m->parameters().size(); ++i)
          m->parameters()[i].copy_(init->parameters()[i]);
      }
      // One parameter per bucket: each bucket is sent as soon as it and those before it are full.
      GradientReducer reducer(m->parameters(), group, /*bucket_bytes=*/1, order);
      for (int step = 0; step < 3; ++step) {
        for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
        reducer.prepare();
        m->forward(inputs[static_cast<size_t>(2 * step + rank)]).pow(2).mean().backward();
        reducer.finish();
        std::vector<torch::Tensor> g;
        for (const auto& p : m->parameters()) g.push_back(p.grad().clone());
        got[static_cast<size_t>(rank)].push_back(g);
      }
      sent[static_cast<size_t>(rank)] = reducer.sent_before_last_gradient();
      count[static_cast<size_t>(rank)] = static_cast<int64_t>(reducer.bucket_count());
      layout[static_cast<size_t>(rank)] = reducer.buckets();
      EXPECT_EQ(reducer.rebuilt(), order == BucketOrder::Observed);
    });
    ASSERT_EQ(count[0], 4);
    EXPECT_EQ(layout[0], layout[1]) << "both ranks must cut the same buckets";
    if (order == BucketOrder::Observed) {
      // The head's gradients arrive first and lead; every bucket but the last left before the
      // backward pass ended.
      EXPECT_EQ(sent[0], count[0] - 1);
      const auto head_weight = static_cast<size_t>(0);  // registration index of head.weight
      EXPECT_TRUE(layout[0][0][0] == head_weight || layout[0][1][0] == head_weight);
    } else {
      // The first bucket waits for the body's gradients, which come last.
      EXPECT_LE(sent[0], 1);
    }
    for (int step = 0; step < 3; ++step) {
      const auto expected = reference(step);
      for (int r = 0; r < 2; ++r)
        for (size_t i = 0; i < expected.size(); ++i)
          EXPECT_TRUE(torch::allclose(got[r][step][i], expected[i], 1e-5, 1e-7))
              << "rank " << r << " step " << step << " parameter " << i;
    }
  }
}

TEST(Train_Distributed, dice_statistics_summed_over_ranks_give_the_global_batch_loss) {
  torch::manual_seed(5);
  const auto logits = torch::randn({4, 3, 8, 8});
  const auto target = torch::randint(0, 3, {4, 1, 8, 8}).to(torch::kFloat);
  DiceCEOptions plain;
  // Reference: one process, the global batch.
  auto x = logits.clone().requires_grad_(true);
  const LossTerms ref = dice_ce_loss(x, target, plain);
  ref.total.backward();
  std::vector<double> loss(2);
  std::vector<torch::Tensor> grad(2);
  with_two_ranks([&](int rank, ProcessGroup& group) {
    DiceCEOptions o;
    o.reduce_batch_stats = [&group](const torch::Tensor& s) {
      return all_reduce_with_grad(s, group);
    };
    auto xr = logits.narrow(0, 2 * rank, 2).clone().requires_grad_(true);
    const LossTerms t = dice_ce_loss(xr, target.narrow(0, 2 * rank, 2), o);
    t.total.backward();
    torch::Tensor v = t.total.detach().clone();
    group.all_reduce_sum(v);
    loss[static_cast<size_t>(rank)] = v.item<double>() / 2;
    grad[static_cast<size_t>(rank)] = xr.grad().clone();
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NEAR(loss[r], ref.total.item<double>(), 1e-6);
    // Averaged over the ranks (as the reducer does), the gradient is the global batch's.
    EXPECT_TRUE(torch::allclose(grad[r] / 2, x.grad().narrow(0, 2 * r, 2), 1e-5, 1e-8))
        << "rank " << r << " max diff "
        << (grad[r] / 2 - x.grad().narrow(0, 2 * r, 2)).abs().max().item<double>();
  }
}

// ---- two `umamba train` processes ----

#ifdef UMAMBA_CLI_PATH

class Train_DistributedCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("OMP_NUM_THREADS", "1", 1);  // two processes on a small machine
    testing::write_neurips_dataset(dir_.path() / "data", 4, 48);
    std::ofstream(dir_.path() / "plans.json") << testing::tiny_plans_2d(32, 2).dump(1);
  }
  std::vector<std::string> common(int64_t batch) const {
    return {"train",
            (dir_.path() / "data").string(),
            "--plans",
            (dir_.path() / "plans.json").string(),
            "-c",
            "2d",
            "-a",
            "bot",
            "--device",
            "cpu",
            "--epochs",
            "2",
            "--iterations",
            "3",
            "--batch-size",
            std::to_string(batch),
            "--folds",
            "3",
            "--workers",
            "1",
            "--val-max-cases",
            "1",
            "--progress",
            "lines",
            "--cache-dir",
            (dir_.path() / "cache").string()};
  }
  // Runs W processes of `umamba train` (W = 1: no data-parallel flags); returns their exit codes.
  // A rendezvous whose port another test took meanwhile is started again on a new port.
  std::vector<int> run(int world, const std::vector<std::string>& base,
                       const std::vector<std::string>& outputs, const std::string& tag) {
    const auto log = [&](int r) {
      return dir_.path() / (tag + "_rank" + std::to_string(r) + ".log");
    };
    return run_ranks(
        world,
        [&](int r, int port) {
          std::vector<std::string> a = base;
          a.insert(a.end(), {"-o", outputs[static_cast<size_t>(r)]});
          if (world > 1) {
            a.insert(a.end(), {"--world-size", std::to_string(world), "--rank", std::to_string(r),
                               "--master-addr", "127.0.0.1", "--master-port", std::to_string(port),
                               "--dist-backend", "gloo", "--dist-timeout", "2"});
          }
          return spawn_umamba(a, log(r));
        },
        log(0));
  }
  std::string log_of(const std::string& tag, int r) const {
    return slurp(dir_.path() / (tag + "_rank" + std::to_string(r) + ".log"));
  }
  TempDir dir_{"dist"};
};

TEST_F(Train_DistributedCli, two_gloo_ranks_follow_one_process_on_the_same_samples) {
  const fs::path d = dir_.path();
  // One process, global batch 4 (the cache is built here).
  auto one = common(4);
  one.insert(one.end(),
             {"--debug-dump", (d / "dump1").string(), "--dist-sampling", "global-slice"});
  ASSERT_EQ(run(1, one, {(d / "one").string()}, "one"), std::vector<int>({0})) << log_of("one", 0);
  // Two processes, 2 samples each: rank r takes samples r, r + 2 of the global batch. Rank 1 gets
  // its own output folder: it must write nothing there.
  auto two = common(4);
  two.insert(two.end(),
             {"--debug-dump", (d / "dump2").string(), "--dist-sampling", "global-slice"});
  const auto codes = run(2, two, {(d / "two").string(), (d / "two_rank1").string()}, "two");
  ASSERT_EQ(codes, std::vector<int>({0, 0})) << log_of("two", 0) << "\n---\n" << log_of("two", 1);
  EXPECT_NE(log_of("two", 0).find("data parallel: 2 processes"), std::string::npos)
      << log_of("two", 0);

  // Parameters identical on both ranks.
  const auto p0 = read_params(d / "dump2" / "rank0_params.pt");
  const auto p1 = read_params(d / "dump2" / "rank1_params.pt");
  const auto p_one = read_params(d / "dump1" / "rank0_params.pt");
  ASSERT_EQ(p0.size(), p1.size());
  ASSERT_EQ(p0.size(), p_one.size());
  double max_diff = 0;
  for (size_t i = 0; i < p0.size(); ++i) {
    EXPECT_TRUE(torch::equal(p0[i], p1[i])) << "parameter " << i;
    max_diff = std::max(max_diff, (p0[i] - p_one[i]).abs().max().item<double>());
  }
  // ... and the 1-process parameters within float tolerance after 6 SGD steps.
  EXPECT_LT(max_diff, 1e-4);
  // The loss trajectory of 2 ranks × 2 equals that of 1 process × 4.
  const auto l_one = read_losses(d / "dump1" / "rank0_losses.txt");
  const auto l0 = read_losses(d / "dump2" / "rank0_losses.txt");
  const auto l1 = read_losses(d / "dump2" / "rank1_losses.txt");
  ASSERT_EQ(l_one.size(), 6u);
  ASSERT_EQ(l0.size(), 6u);
  ASSERT_EQ(l1.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(l0[i].first, static_cast<int64_t>(i));
    EXPECT_NEAR(l0[i].second, l_one[i].second, 1e-5 * std::max(1.0, std::abs(l_one[i].second)))
        << "iteration " << i;
    EXPECT_EQ(l0[i].second, l1[i].second) << "iteration " << i;  // the logged loss is global
  }
  EXPECT_GT(l_one.front().second, l_one.back().second);  // it trained
  // Only rank 0 wrote: rank 1's output folder was never created; rank 0's holds the model.
  EXPECT_FALSE(fs::exists(d / "two_rank1"));
  EXPECT_TRUE(fs::exists(d / "two" / "fold_0" / "weights.pt"));
  EXPECT_TRUE(fs::exists(d / "two" / "fold_0" / "checkpoint_final.pt"));
  EXPECT_TRUE(fs::exists(d / "two" / "fold_0" / "training_log.csv"));
  // Rank 1 printed no progress and no summary.
  EXPECT_EQ(log_of("two", 1).find("epoch 1/2"), std::string::npos) << log_of("two", 1);
  EXPECT_EQ(log_of("two", 1).find("model folder"), std::string::npos) << log_of("two", 1);
}

TEST_F(Train_DistributedCli, a_two_rank_checkpoint_resumes_in_one_process) {
  const fs::path d = dir_.path();
  // Reference: one process, uninterrupted.
  auto one = common(4);
  one.insert(one.end(), {"--debug-dump", (d / "ref").string()});
  ASSERT_EQ(run(1, one, {(d / "ref_model").string()}, "ref"), std::vector<int>({0}))
      << log_of("ref", 0);
  // Two ranks (same samples), stopped after 4 of the 6 iterations: exit status 75.
  auto two = common(4);
  two.insert(two.end(), {"--dist-sampling", "global-slice", "--stop-after-iterations", "4"});
  const auto codes = run(2, two, {(d / "m").string(), (d / "m").string()}, "stop");
  ASSERT_EQ(codes, std::vector<int>({75, 75})) << log_of("stop", 0) << "\n---\n"
                                               << log_of("stop", 1);
  ASSERT_TRUE(fs::exists(d / "m" / "fold_0" / "checkpoint_latest.pt"));
  // One process continues the 2-rank run.
  auto resume = common(4);
  resume.insert(resume.end(), {"--resume", "--debug-dump", (d / "resumed").string()});
  ASSERT_EQ(run(1, resume, {(d / "m").string()}, "resume"), std::vector<int>({0}))
      << log_of("resume", 0);
  EXPECT_NE(log_of("resume", 0).find("resuming fold 0 at epoch 1, iteration 1"), std::string::npos)
      << log_of("resume", 0);
  const auto ref = read_params(d / "ref" / "rank0_params.pt");
  const auto got = read_params(d / "resumed" / "rank0_params.pt");
  ASSERT_EQ(ref.size(), got.size());
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_TRUE(torch::allclose(ref[i], got[i], 1e-4, 1e-5)) << "parameter " << i;
  const auto lr = read_losses(d / "ref" / "rank0_losses.txt");
  const auto lg = read_losses(d / "resumed" / "rank0_losses.txt");
  ASSERT_EQ(lg.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(lg[i].first, static_cast<int64_t>(4 + i));
    EXPECT_NEAR(lg[i].second, lr[4 + i].second, 1e-5) << "iteration " << lg[i].first;
  }
}

TEST_F(Train_DistributedCli, torchrun_and_slurm_variables_start_per_rank_streams) {
  const fs::path d = dir_.path();
  // Prepare the cache once (so that both runs below start alike).
  ASSERT_EQ(run(1, common(4), {(d / "warm").string()}, "warm"), std::vector<int>({0}))
      << log_of("warm", 0);
  for (const std::string launcher : {"torchrun", "slurm"}) {
    const auto log_path = [&](int r) { return d / (launcher + std::to_string(r) + ".log"); };
    const std::vector<int> codes = run_ranks(
        2,
        [&](int r, int port) {
          std::vector<std::pair<std::string, std::string>> env;
          if (launcher == "torchrun") {
            env = {{"RANK", std::to_string(r)},
                   {"WORLD_SIZE", "2"},
                   {"LOCAL_RANK", std::to_string(r)},
                   {"MASTER_ADDR", "127.0.0.1"},
                   {"MASTER_PORT", std::to_string(port)}};
          } else {
            env = {{"SLURM_PROCID", std::to_string(r)},
                   {"SLURM_NTASKS", "2"},
                   {"SLURM_LOCALID", std::to_string(r)},
                   {"SLURM_JOB_NODELIST", "localhost"},
                   {"MASTER_PORT", std::to_string(port)}};
          }
          auto a = common(4);  // default: per-rank sampling, augmentation on
          a.insert(a.end(), {"-o", (d / launcher).string(), "--debug-dump",
                             (d / (launcher + "_dump")).string(), "--dist-timeout", "2"});
          return spawn_umamba(a, log_path(r), env);
        },
        log_path(0));
    ASSERT_EQ(codes.size(), 2u);
    for (int r = 0; r < 2; ++r) EXPECT_EQ(codes[static_cast<size_t>(r)], 0) << slurp(log_path(r));
    const std::string log0 = slurp(d / (launcher + "0.log"));
    EXPECT_NE(log0.find(launcher == "torchrun" ? "torchrun variables" : "SLURM variables"),
              std::string::npos)
        << log0;
    EXPECT_NE(log0.find("per-rank sampling"), std::string::npos) << log0;
    const auto p0 = read_params(d / (launcher + "_dump") / "rank0_params.pt");
    const auto p1 = read_params(d / (launcher + "_dump") / "rank1_params.pt");
    ASSERT_EQ(p0.size(), p1.size());
    for (size_t i = 0; i < p0.size(); ++i)
      EXPECT_TRUE(torch::equal(p0[i], p1[i])) << launcher << " parameter " << i;
    const auto losses = read_losses(d / (launcher + "_dump") / "rank0_losses.txt");
    ASSERT_EQ(losses.size(), 6u);
    for (const auto& [i, l] : losses) EXPECT_TRUE(std::isfinite(l)) << launcher << " " << i;
  }
}

TEST_F(Train_DistributedCli, an_error_on_rank_0_stops_every_rank) {
  const fs::path d = dir_.path();
  ASSERT_EQ(run(1, common(4), {(d / "m").string()}, "first"), std::vector<int>({0}))
      << log_of("first", 0);
  // The folder holds a finished run and --resume is missing: rank 0 refuses during setup; rank 1
  // must not wait for it at the next collective.
  const auto codes = run(2, common(4), {(d / "m").string(), (d / "m").string()}, "again");
  EXPECT_EQ(codes, std::vector<int>({1, 1}));
  EXPECT_NE(log_of("again", 0).find("already holds a training run"), std::string::npos)
      << log_of("again", 0);
  EXPECT_NE(log_of("again", 1).find("rank 0 failed"), std::string::npos) << log_of("again", 1);
}

TEST_F(Train_DistributedCli, a_batch_that_does_not_split_is_refused_by_every_rank) {
  const fs::path d = dir_.path();
  const auto codes = run(2, common(3), {(d / "m").string(), (d / "m").string()}, "odd");
  EXPECT_EQ(codes, std::vector<int>({1, 1}));
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(log_of("odd", r).find("batch size 3 (the global batch) does not split evenly over 2"),
              std::string::npos)
        << log_of("odd", r);
  }
}

#endif  // UMAMBA_CLI_PATH

}  // namespace
}  // namespace umamba::train
