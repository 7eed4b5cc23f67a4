// cmkfs fsck: checks a store offline, with its key, and repairs nothing. Every inode and
// directory record must authenticate, the tree must hang together (entries point at inodes of
// their type, link counts match the names, every inode is reachable or an orphan), and every
// chunk of every file must authenticate in an object of the right length; objects that belong
// to no file are reported as leaked. Problems name inodes and chunks, and the path of each inode
// (inside a registry, the repository and blob digest too).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fs/admin/offline.h"

namespace cmkfs::fs {

struct FsckProblem {
  uint64_t ino = 0;      // the inode it is about, or 0
  std::string text;      // one line, starting with the inode or object it is about
  std::string path;      // the inode's path from the root, when it has one
  std::string registry;  // inside a registry: "blob sha256:<hex> (repositories ...)", "repository <name>"
  // What --repair may do about it: never anything to authenticated data.
  // kDropNotes: crash-recovery notes that do not authenticate, which the mount's recovery removes.
  enum class Fix { kNone, kRemoveObject, kTrimObject, kDropNotes } fix = Fix::kNone;
  Id128 object{};
  uint64_t length = 0;  // kTrimObject: the length it should have
};

struct FsckReport {
  uint64_t directories = 0, files = 0, symlinks = 0, others = 0;
  uint64_t entries = 0, chunks = 0, bytes = 0;
  uint64_t orphans = 0;               // unlinked while open; the next mount removes them
  unsigned threads = 1;               // that checked the chunks
  std::vector<FsckProblem> problems;
  // What a crash left and the next mount repairs (noted by the crashed mount): not damage.
  std::vector<std::string> leftovers;
};

// Called as files are checked: bytes and files done, and in all.
using FsckProgress = std::function<void(uint64_t bytes, uint64_t total_bytes, uint64_t files, uint64_t total_files)>;

// Checks a store opened with open_offline().
Result<FsckReport> check_store(OfflineStore& store, const FsckProgress& progress = nullptr);

}  // namespace cmkfs::fs
