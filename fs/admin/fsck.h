// cmkfs fsck: checks a store offline, with its key, and repairs nothing. Every inode and
// directory record must authenticate, the tree must hang together (entries point at inodes of
// their type, link counts match the names, every inode is reachable or an orphan), and every
// chunk of every file must authenticate in an object of the right length; objects that belong
// to no file are reported as leaked. Problems name inodes and chunks, never file names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fs/admin/offline.h"

namespace cmkfs::fs {

struct FsckReport {
  uint64_t directories = 0, files = 0, symlinks = 0, others = 0;
  uint64_t entries = 0, chunks = 0, bytes = 0;
  uint64_t orphans = 0;               // unlinked while open; the next mount removes them
  std::vector<std::string> problems;  // one line each
  // What a crash left and the next mount repairs (noted by the crashed mount): not damage.
  std::vector<std::string> leftovers;
};

// Checks a store opened with open_offline().
Result<FsckReport> check_store(OfflineStore& store);

}  // namespace cmkfs::fs
