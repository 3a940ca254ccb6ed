#pragma once
// Large kernel outputs on huge pages.
//
// A fresh tensor of more than a few MiB comes from mmap (glibc, and torch's CPU allocator on top of
// it), so the kernel that fills it takes one page fault per 4 KiB page the first time it writes:
// 11k faults for a 44 MiB sparse-convolution output, a fifth of that op's time on a 2-core Zen 4
// (benchmarks/RESULTS.md). Asked to (MADV_HUGEPAGE), Linux backs the range with 2 MiB pages instead,
// one fault each. This is what torch does for every allocation under THP_MEM_ALLOC_ENABLE=1; here it
// is done only for outputs the kernel writes whole, so no page is backed that would not be touched.
// It is advice: where transparent huge pages are off ("never"), or already "always", or on another
// OS, nothing changes.
#include <ATen/core/Tensor.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastperc {
namespace cpu {

// Advises huge pages for the whole 2 MiB pages inside t's data (t about to be written whole), where
// there are at least two of them: smaller tensors are not worth the system call. An error leaves the
// pages as they were.
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t end = begin + static_cast<uintptr_t>(t.numel()) * t.element_size();
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1), last = end & ~(kHuge - 1);
  if (last >= first + 2 * kHuge) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

}  // namespace cpu
}  // namespace fastperc
