// The byte ranges of a file whose last write failed (ENOSPC, EIO, a revoked key) after the
// writer was already told it succeeded: with the writeback cache, write(2) returns once the data
// is in the page cache and the failure only reaches fsync(2) or close(2). The kernel keeps its
// own idea of the file's size and forgets the failed pages when memory is short; read again,
// those bytes would come back as zeros. Reads that touch a lost range answer EIO instead, until
// the range is written again or truncated away. Held in memory only: after a remount the store's
// size and contents are the only view there is.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>

namespace cmkfs::fs {

class LostRanges {
 public:
  bool empty() const { return ranges_.empty(); }
  void add(uint64_t begin, uint64_t end) {
    if (begin >= end) return;
    forget(begin, end);
    auto next = ranges_.lower_bound(begin);
    if (next != ranges_.begin()) {  // merge with a range ending where this one begins
      auto prev = std::prev(next);
      if (prev->second == begin) begin = prev->first, ranges_.erase(prev);
    }
    if (next != ranges_.end() && next->first == end) end = next->second, ranges_.erase(next);
    ranges_[begin] = end;
  }
  // Rewritten bytes are no longer lost.
  void forget(uint64_t begin, uint64_t end) {
    if (begin >= end) return;
    auto it = ranges_.lower_bound(begin);
    if (it != ranges_.begin() && std::prev(it)->second > begin) --it;
    while (it != ranges_.end() && it->first < end) {
      uint64_t b = it->first, e = it->second;
      it = ranges_.erase(it);
      if (b < begin) ranges_[b] = begin;
      if (e > end) it = ranges_.emplace(end, e).first;
    }
  }
  // The first lost byte in [begin, end), or end if none is.
  uint64_t first_in(uint64_t begin, uint64_t end) const {
    auto it = ranges_.upper_bound(begin);
    if (it != ranges_.begin() && std::prev(it)->second > begin) return begin;
    return it != ranges_.end() && it->first < end ? it->first : end;
  }

 private:
  std::map<uint64_t, uint64_t> ranges_;  // begin -> end, disjoint, not touching
};

}  // namespace cmkfs::fs
