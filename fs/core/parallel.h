// Runs the pieces of one request on every core: large reads and writes open or seal their chunks
// in parallel. One process-wide pool of (cores - 1) helpers; the calling thread works too.
//
// Thread-safety: parallel_for may be called from any number of threads at once.
#pragma once

#include <cstddef>
#include <functional>

namespace cmkfs::fs {

// Calls fn(begin, end) over [0, n) split into contiguous ranges of at least `min_per_task`, on the
// pool and the caller; returns when all are done. Small jobs run inline, and so does a call made
// while another that could split is in progress: the cores are busy already.
void parallel_for(size_t n, size_t min_per_task, const std::function<void(size_t, size_t)>& fn);

}  // namespace cmkfs::fs
