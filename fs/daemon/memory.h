// The daemon's resident memory as the kernel counts it, for keeping it bounded.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>

namespace cmkfs::fs {

// The file and shared-memory pages this process maps that are resident (its binary, its
// libraries, LMDB's map of the metadata, which is shared memory when the store is on a tmpfs):
// /proc/self/statm's third field. 0 when it cannot be read.
inline uint64_t resident_file_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "re");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0, shared = 0;
  int n = std::fscanf(f, "%llu %llu %llu", &size, &resident, &shared);
  std::fclose(f);
  return n == 3 ? shared * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

// Above this, the daemon lets go of the metadata pages it has mapped (MetaStore::
// release_mapped_pages), so its resident set follows what it serves, not the store's size.
inline constexpr uint64_t kResidentFileBudget = 64ull << 20;

}  // namespace cmkfs::fs
