// The objects a mount creates, noted before each one is made, for crash recovery. Part of
// fs/store (include fs/store/store.h).
//
// A create makes its object at once but its inode reaches the disk with a later batch: a crash in
// between leaves an object that no inode names. The note (inode, object id) is appended with
// write(2), unsynced, before the object is created, so it survives whatever crash the object
// survives; recovery checks each noted object against its inode instead of listing every object.
// Two files take turns (STORE/meta/created.0 and .1): once the one in use is large, notes go to
// the other, and the first is emptied when every create it noted has committed and that commit is
// on disk. Records: be64 inode | 16-byte object id | 16-byte tag, the tag an HMAC under the
// store's name key (which outlives data-key rotations): recovery removes the object a note names,
// so a note the store's writer planted must not pass for one.
//
// Thread-safety: note() and committed() from any thread.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "crypto/base/id128.h"
#include "crypto/base/status.h"
#include "crypto/crypto.h"

namespace cmkfs::fs {

class CreationLog {
 public:
  struct Entry {
    uint64_t ino = 0;
    Id128 file_id{};
  };
  // Opens the two files in the store's meta directory, without following links; `writable`
  // creates them, else a missing one reads as empty.
  static Result<std::unique_ptr<CreationLog>> open(int meta_dir_fd, bool writable);
  ~CreationLog();

  // Before the object is created; returns a ticket for committed(). `name_key`: StoreKeys::name.
  Result<int> note(uint64_t ino, const Id128& file_id, const crypto::HmacKey& name_key);
  // The create that took `ticket` committed (or failed): its note is no longer in flight.
  void committed(int ticket);
  // Switches files when the one in use is large; `when_durable` runs a function once everything
  // committed so far is on disk (meta::MetaStore::when_durable). Call now and then (the flush).
  void maybe_turn(const std::function<void(std::function<void()>)>& when_durable);

  // Every note in both files whose tag verifies (a torn last record is skipped); how many did
  // not goes to `unauthentic`.
  Result<std::vector<Entry>> entries(const crypto::HmacKey& name_key, size_t* unauthentic = nullptr);
  // Empties both: everything noted is known to be safe (after recovery, at a clean unmount).
  Status clear();

 private:
  static constexpr size_t kBody = 8 + 16;  // be64 inode | object id: what the tag covers
  static constexpr size_t kTag = 16;
  static constexpr size_t kRecord = kBody + kTag;
  // Writes the tag of `rec`'s body after it.
  static void tag(const crypto::HmacKey& key, uint8_t* rec);
  static constexpr off_t kTurnAt = 1 << 20;  // ~26,000 creates per file
  static constexpr off_t kReadAtMost = 64 << 20;
  CreationLog() = default;

  std::array<int, 2> fds_{-1, -1};
  std::array<std::atomic<int64_t>, 2> in_flight_{};
  std::mutex mu_;  // guards current_ and retiring_
  int current_ = 0;
  bool retiring_ = false;  // the other file waits to be emptied
};

}  // namespace cmkfs::fs
