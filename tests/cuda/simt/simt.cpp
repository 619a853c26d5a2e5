// The SIMT emulator's fibers and scheduler (see simt.h for the method).
#include "cuda/simt/simt.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define UMAMBA_SIMT_ASM_SWITCH 1
#else
#include <ucontext.h>  // portable fallback (and the one AddressSanitizer follows)
#endif

#ifdef UMAMBA_SIMT_ASM_SWITCH
// Saves the callee-saved registers of the System V x86-64 ABI on the current stack, stores the
// stack pointer in *from and continues on the stack `to` (prepared by this function or by
// start_stack below). The floating-point control state is left alone: kernels do not change it.
extern "C" void umamba_simt_switch(void** from, void* to);
asm(R"(
    .text
    .globl umamba_simt_switch
    .type umamba_simt_switch, @function
umamba_simt_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size umamba_simt_switch, .-umamba_simt_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

namespace umamba::simt {

ThreadContext* g_current = nullptr;

namespace {

constexpr std::size_t kStackBytes = 256 * 1024;
constexpr int kWarp = 32;

enum class Wait { None, Block, Warp, Done };
enum class WarpOp { None, Sync, Shuffle };

struct Fiber {
  ThreadContext ctx;
#ifdef UMAMBA_SIMT_ASM_SWITCH
  void* sp = nullptr;
#else
  ucontext_t uc{};
#endif
  Wait wait = Wait::None;
  std::uint64_t shuffles = 0;  // this lane's shuffles so far (all lanes agree: same sequence)
};

struct Block {
  std::vector<Fiber> fibers;
  int live = 0;
  int at_block_barrier = 0;
  std::vector<int> warp_live, at_warp_barrier;
  std::vector<WarpOp> warp_op;       // the kind of operation the warp's waiting lanes are in
  std::vector<std::uint32_t> slots;  // [warp][2][32] shuffle values
  std::vector<unsigned char> dynamic_shared;
  std::string error;
};

struct Emulator {
  Block block;
  int current = -1;
  void (*entry)(void*) = nullptr;
  void* arg = nullptr;
  std::mt19937_64 rng{0x5eed};
  std::string last_error;
#ifdef UMAMBA_SIMT_ASM_SWITCH
  void* scheduler_sp = nullptr;
#else
  ucontext_t scheduler_uc{};
#endif
  std::vector<void*> stacks;  // reused across launches

  ~Emulator() {
    for (void* s : stacks) munmap(s, kStackBytes);
  }
};

Emulator g_emulator;  // one per process (see simt.h: one launch at a time)

Emulator& emu() {
  return g_emulator;
}

Fiber& self() {
  Emulator& e = emu();
  return e.block.fibers[static_cast<std::size_t>(e.current)];
}

// Back to the scheduler (from a fiber).
void yield() {
  Emulator& e = emu();
  Fiber& f = self();
#ifdef UMAMBA_SIMT_ASM_SWITCH
  umamba_simt_switch(&f.sp, e.scheduler_sp);
#else
  swapcontext(&f.uc, &e.scheduler_uc);
#endif
}

[[noreturn]] void fiber_main() {
  Emulator& e = emu();
  e.entry(e.arg);
  Fiber& f = self();
  f.wait = Wait::Done;
  yield();
  std::abort();  // a finished fiber is never resumed
}

#ifdef UMAMBA_SIMT_ASM_SWITCH
// A fresh stack whose first switch "returns" into fiber_main with the ABI's alignment (rsp = 8 mod
// 16 at the function's first instruction, as after a call).
void* start_stack(void* stack) {
  auto top = reinterpret_cast<std::uintptr_t>(stack) + kStackBytes - 64;
  top &= ~static_cast<std::uintptr_t>(15);  // 16-byte aligned: the return address goes here
  auto* slot = reinterpret_cast<void**>(top);
  slot[0] = reinterpret_cast<void*>(&fiber_main);
  for (int i = 1; i <= 6; ++i) slot[-i] = nullptr;  // rbp rbx r12 r13 r14 r15
  return slot - 6;
}
#else
void ucontext_entry() {
  fiber_main();
}
#endif

void resume(Emulator& e, int i) {
  e.current = i;
  Fiber& f = e.block.fibers[static_cast<std::size_t>(i)];
  g_current = &f.ctx;
#ifdef UMAMBA_SIMT_ASM_SWITCH
  umamba_simt_switch(&e.scheduler_sp, f.sp);
#else
  swapcontext(&e.scheduler_uc, &f.uc);
#endif
  e.current = -1;
}

void fail_block(Block& b, const std::string& what) {
  if (b.error.empty()) b.error = what;
}

// Releases every barrier whose live threads have all arrived. True when one was released.
bool release_barriers(Block& b) {
  bool released = false;
  if (b.live > 0 && b.at_block_barrier == b.live) {
    for (Fiber& f : b.fibers)
      if (f.wait == Wait::Block) f.wait = Wait::None;
    b.at_block_barrier = 0;
    released = true;
  }
  const int warps = static_cast<int>(b.warp_live.size());
  for (int w = 0; w < warps; ++w) {
    if (b.at_warp_barrier[w] == 0 || b.at_warp_barrier[w] != b.warp_live[w]) continue;
    const int lanes = std::min(kWarp, static_cast<int>(b.fibers.size()) - w * kWarp);
    if (b.warp_live[w] != lanes) {
      fail_block(b, "a full-mask warp operation in warp " + std::to_string(w) +
                        " after some of its lanes exited (undefined on the GPU)");
      return false;
    }
    for (int l = 0; l < lanes; ++l) {
      Fiber& f = b.fibers[static_cast<std::size_t>(w * kWarp + l)];
      if (f.wait == Wait::Warp) f.wait = Wait::None;
    }
    b.at_warp_barrier[w] = 0;
    b.warp_op[w] = WarpOp::None;
    released = true;
  }
  return released;
}

std::string describe_deadlock(const Block& b) {
  int block_wait = 0, warp_wait = 0;
  for (const Fiber& f : b.fibers) {
    block_wait += f.wait == Wait::Block;
    warp_wait += f.wait == Wait::Warp;
  }
  return "deadlock: " + std::to_string(block_wait) + " threads wait at __syncthreads and " +
         std::to_string(warp_wait) + " at warp operations, " + std::to_string(b.live) +
         " threads live (a barrier some threads never reach)";
}

void arrive_warp(WarpOp op, unsigned mask) {
  Emulator& e = emu();
  Block& b = e.block;
  if (mask != 0xffffffffu) {
    fail_block(b, "a warp operation with a partial mask (the emulator takes full masks only)");
  }
  const int w = e.current / kWarp;
  if (b.warp_op[w] != WarpOp::None && b.warp_op[w] != op) {
    fail_block(b, "lanes of warp " + std::to_string(w) +
                      " wait at different kinds of warp operation (__syncwarp and a shuffle)");
  }
  b.warp_op[w] = op;
  self().wait = Wait::Warp;
  ++b.at_warp_barrier[w];
  yield();
}

}  // namespace

void set_seed(std::uint64_t seed) {
  emu().rng.seed(seed);
}

const std::string& last_error() {
  return emu().last_error;
}

void syncthreads() {
  Emulator& e = emu();
  self().wait = Wait::Block;
  ++e.block.at_block_barrier;
  yield();
}

void syncwarp(unsigned mask) {
  arrive_warp(WarpOp::Sync, mask);
}

std::uint32_t shuffle_bits(unsigned mask, std::uint32_t value, int lane_arg, int width,
                           ShuffleMode mode) {
  Emulator& e = emu();
  Block& b = e.block;
  const int lane = e.current % kWarp;
  const int w = e.current / kWarp;
  Fiber& f = self();
  std::uint32_t* slot = b.slots.data() + (static_cast<std::size_t>(w) * 2 + f.shuffles % 2) * kWarp;
  ++f.shuffles;
  slot[lane] = value;
  arrive_warp(WarpOp::Shuffle, mask);
  // The source lane (PTX shfl.sync: `width` lanes form a segment; a source outside the segment
  // returns the lane's own value, Index takes the source modulo the segment).
  const int seg = lane & ~(width - 1);
  int src = lane;
  switch (mode) {
    case ShuffleMode::Index:
      src = seg + (lane_arg & (width - 1));
      break;
    case ShuffleMode::Up:
      src = (lane - seg) >= lane_arg ? lane - lane_arg : lane;
      break;
    case ShuffleMode::Down:
      src = (lane - seg) + lane_arg < width ? lane + lane_arg : lane;
      break;
    case ShuffleMode::Xor: {
      const int x = lane ^ lane_arg;
      src = (x & ~(width - 1)) > seg ? lane : x;
      break;
    }
  }
  return slot[src];
}

void misaligned(const char* what, const void* address) {
  std::fprintf(stderr, "simt emulator: %s at %p is not 16-byte aligned (a fault on the GPU)\n",
               what, address);
  std::abort();
}

void* dynamic_shared() {
  return emu().block.dynamic_shared.data();
}

bool launch_raw(void (*entry)(void*), void* arg, unsigned grid, unsigned block_threads,
                std::size_t shared_bytes) {
  Emulator& e = emu();
  e.last_error.clear();
  if (block_threads < 1 || block_threads > 1024 || grid < 1) {
    e.last_error = "launch of " + std::to_string(grid) + " blocks of " +
                   std::to_string(block_threads) + " threads: out of range";
    return false;
  }
  e.entry = entry;
  e.arg = arg;
  const int n = static_cast<int>(block_threads);
  const int warps = (n + kWarp - 1) / kWarp;
  while (e.stacks.size() < static_cast<std::size_t>(n)) {
    void* s =
        mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) throw std::runtime_error("simt: cannot map a fiber stack");
    e.stacks.push_back(s);
  }
  std::vector<int> order(static_cast<std::size_t>(n));
  for (unsigned blk = 0; blk < grid; ++blk) {
    Block& b = e.block;
    b.fibers.assign(static_cast<std::size_t>(n), Fiber{});
    b.live = n;
    b.at_block_barrier = 0;
    b.warp_live.assign(static_cast<std::size_t>(warps), 0);
    for (int w = 0; w < warps; ++w) b.warp_live[w] = std::min(kWarp, n - w * kWarp);
    b.at_warp_barrier.assign(static_cast<std::size_t>(warps), 0);
    b.warp_op.assign(static_cast<std::size_t>(warps), WarpOp::None);
    b.slots.assign(static_cast<std::size_t>(warps) * 2 * kWarp, 0);
    b.dynamic_shared.assign(shared_bytes + 16, 0xff);  // NaN floats: unwritten reads show
    b.error.clear();
    for (int i = 0; i < n; ++i) {
      Fiber& f = b.fibers[static_cast<std::size_t>(i)];
      f.ctx.thread_idx = {static_cast<unsigned>(i), 0, 0};
      f.ctx.block_idx = {blk, 0, 0};
      f.ctx.block_dim = dim3(block_threads, 1, 1);
      f.ctx.grid_dim = dim3(grid, 1, 1);
      void* stack = e.stacks[static_cast<std::size_t>(i)];
#ifdef UMAMBA_SIMT_ASM_SWITCH
      f.sp = start_stack(stack);
#else
      getcontext(&f.uc);
      f.uc.uc_stack.ss_sp = stack;
      f.uc.uc_stack.ss_size = kStackBytes;
      f.uc.uc_link = nullptr;
      makecontext(&f.uc, ucontext_entry, 0);
#endif
    }
    // A random order per block, entered at a random place each round: cheap, and every thread
    // gets to run first or last at some barrier.
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), e.rng);
    while (b.live > 0 && b.error.empty()) {
      const auto start = static_cast<std::size_t>(e.rng() % static_cast<std::uint64_t>(n));
      std::rotate(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(start), order.end());
      bool ran = false;
      for (int i : order) {
        Fiber& f = b.fibers[static_cast<std::size_t>(i)];
        if (f.wait != Wait::None) continue;
        resume(e, i);
        ran = true;
        if (f.wait == Wait::Done) {
          --b.live;
          --b.warp_live[i / kWarp];
        }
        if (!b.error.empty()) break;
      }
      const bool released = b.error.empty() && release_barriers(b);
      if (!ran && !released && b.live > 0 && b.error.empty()) fail_block(b, describe_deadlock(b));
    }
    g_current = nullptr;
    if (!b.error.empty()) {
      // The fibers of this block are abandoned mid-kernel (their stacks are reused as fresh).
      e.last_error = "block " + std::to_string(blk) + ": " + b.error;
      return false;
    }
  }
  return true;
}

}  // namespace umamba::simt
