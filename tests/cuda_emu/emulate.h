#pragma once
// Runs CUDA kernels on the CPU, for the tests of kernels that no GPU has run yet. The threads of a
// block are fibers (ucontext) on one OS thread: each runs until it reaches __syncthreads or returns,
// and once every live thread of the block is waiting, all resume (threads that returned count as
// arrived, as on the GPU). Each round resumes the threads in a fresh pseudo-random order (seeded, so
// runs repeat), so a shared-memory race between barriers shows up as a wrong result instead of
// depending on one fixed thread order. Blocks run one after another, so __shared__ variables can be
// function statics. Atomics are plain read-modify-writes (one OS thread). Kernels must not throw.
//
// What this checks: index math, shared-memory tiling, barriers and their votes, the launch geometry
// and the drivers around the kernels (the same source nvcc compiles). What it cannot: warp-level
// behaviour, memory ordering, timing, and anything specific to the hardware.
//
// Include after every ATen / torch header and before the kernel headers (cuda/*_device.cuh).
#include <ucontext.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <random>
#include <utility>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

inline dim3 thread_idx, block_idx, block_dim, grid_dim;

// One block's threads as fibers.
class Block {
 public:
  static constexpr size_t kStack = 128 * 1024;

  // Runs body() once per thread of the block (thread_idx set), switching at barriers.
  void run(unsigned n, const dim3& block, const std::function<void()>& body) {
    body_ = &body;
    if (fibers_.size() < n) fibers_.resize(n);
    while (stacks_.size() < n) stacks_.push_back(std::make_unique<char[]>(kStack));
    for (unsigned t = 0; t < n; ++t) {
      Fiber& f = fibers_[t];
      f.done = false;
      f.index = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = stacks_[t].get();
      f.context.uc_stack.ss_size = kStack;
      f.context.uc_link = &scheduler_;
      makecontext(&f.context, &Block::entry, 0);
    }
    unsigned alive = n;
    order_.resize(n);
    for (unsigned t = 0; t < n; ++t) order_[t] = t;
    while (alive > 0) {  // one round: every live thread runs to its next barrier or returns
      vote_ = 0;
      std::shuffle(order_.begin(), order_.end(), rng_);
      for (unsigned t : order_) {
        Fiber& f = fibers_[t];
        if (f.done) continue;
        current_ = &f;
        thread_idx = f.index;
        swapcontext(&scheduler_, &f.context);
        if (f.done) --alive;
      }
      vote_result_ = vote_;
    }
  }

  // __syncthreads with a vote: returns the OR of every waiting thread's predicate.
  int barrier(int predicate) {
    vote_ |= predicate != 0;
    Fiber* self = current_;
    swapcontext(&self->context, &scheduler_);
    return vote_result_;
  }

 private:
  struct Fiber {
    ucontext_t context;
    dim3 index;
    bool done = true;
  };
  static void entry();

  std::vector<Fiber> fibers_;
  std::vector<unsigned> order_;
  std::mt19937 rng_{12345};
  std::vector<std::unique_ptr<char[]>> stacks_;
  ucontext_t scheduler_;
  Fiber* current_ = nullptr;
  const std::function<void()>* body_ = nullptr;
  int vote_ = 0, vote_result_ = 0;
};

inline Block block;

inline void Block::entry() {
  (*block.body_)();
  block.current_->done = true;  // uc_link returns to the scheduler
}

inline void syncthreads() { block.barrier(0); }
inline int syncthreads_or(int predicate) { return block.barrier(predicate); }

// The launcher the kernel drivers take (cf. fastperc::cuda::CudaLaunch).
struct Launch {
  template <typename... Params, typename... Args>
  void operator()(dim3 grid, dim3 threads, void (*kernel)(Params...), Args&&... args) const {
    grid_dim = grid;
    block_dim = threads;
    const std::function<void()> body = [&] { kernel(args...); };
    for (unsigned bz = 0; bz < grid.z; ++bz)
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
          block_idx = dim3(bx, by, bz);
          block.run(threads.x * threads.y * threads.z, threads, body);
        }
  }
};

}  // namespace emu

inline unsigned long long atomicMin(unsigned long long* address, unsigned long long value) {
  const unsigned long long old = *address;
  if (value < old) *address = value;
  return old;
}

inline unsigned long long atomicCAS(unsigned long long* address, unsigned long long compare, unsigned long long value) {
  const unsigned long long old = *address;
  if (old == compare) *address = value;
  return old;
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define __syncthreads() emu::syncthreads()
#define __syncthreads_or(predicate) emu::syncthreads_or(predicate)
