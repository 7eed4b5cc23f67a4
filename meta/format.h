// On-disk constants of a store's metadata. The prose description is in README.md ("On-disk format").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cmkfs::meta {

// Bumped on any incompatible change; a store with another version is refused.
inline constexpr uint32_t kFormatVersion = 1;

// LMDB named databases.
inline constexpr std::string_view kTableSuper = "super";      // "superblock" -> JSON, plaintext + MAC
inline constexpr std::string_view kTableKeys = "keys";        // be32 generation -> wrapped DEK (opaque)
inline constexpr std::string_view kTableInodes = "inodes";    // be64 ino -> sealed inode record
inline constexpr std::string_view kTableDirents = "dirents";  // be64 parent | be64 slot -> sealed entry
inline constexpr std::string_view kTableOrphans = "orphans";  // be64 ino -> "" (unlinked, still open)
// What a crash of the mount can leave behind, for the next one to repair (added in a later
// release: created on first writable open, read as empty where missing):
//   'p' | file id (16) -> sealed ""   an object to remove once the metadata that dropped it is
//                                     durable
//   'w' | be64 ino     -> sealed ""   a file written since its size was last saved: its object
//                                     may be longer (or, cut, shorter) than the saved size says
// (sealed as records are, the key as AAD: a note that does not authenticate is never acted on)
inline constexpr std::string_view kTableRecovery = "recovery";
inline constexpr std::string_view kSuperKey = "superblock";

inline constexpr uint8_t kInodeRecordVersion = 1;
inline constexpr uint8_t kDirentRecordVersion = 1;

// A directory entry lives in the first free slot of a window that starts at a keyed hash of its
// parent and name. Slots below kFirstSlot are reserved for readdir's "." and "..".
inline constexpr uint64_t kFirstSlot = 16;
inline constexpr uint64_t kSlotWindow = 16;

inline constexpr uint64_t kRootIno = 1;
inline constexpr uint64_t kLmdbMapSize = uint64_t{256} << 30;  // address space only, not disk
// Disk kept allocated ahead of LMDB's last page, so deletes can commit on a full disk.
inline constexpr uint64_t kMetaReserveBytes = uint64_t{4} << 20;
// Changes per group-commit batch: even if each dirtied four pages of its own, a batch stays well
// inside kMetaReserveBytes, so writing it cannot fail for want of space.
inline constexpr size_t kBatchMaxChanges = 128;

}  // namespace cmkfs::meta
