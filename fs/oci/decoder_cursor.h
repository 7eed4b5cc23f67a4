// What the readers of compressed layers keep between reads (fs/oci/gzip_index.h, zstd_index.h):
// their decoder where the last read stopped, and the last bytes it made. A file read in requests
// of 128 KiB otherwise decodes from the access point before each request again; the kernel's
// readahead sends them out of order within its window, which the recent bytes serve.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

namespace cmkfs::oci {

// The last bytes a decoder made, up to pos(), in a ring (decompressed offset x at x % capacity).
// With no capacity it only counts: pos() still moves.
class RecentOutput {
 public:
  explicit RecentOutput(size_t capacity = 0)
      : ring_(capacity ? new uint8_t[capacity] : nullptr), capacity_(capacity) {}  // unfilled: pages come as used
  uint64_t pos() const { return pos_; }
  void restart(uint64_t pos) { pos_ = pos, kept_ = 0; }
  // `k` bytes decoded at pos(); pos() moves past them.
  void append(const uint8_t* p, size_t k);
  // Copies what it holds of [offset, offset + len), from offset on; returns how much.
  size_t recall(uint64_t offset, uint8_t* out, size_t len) const;
  void wipe();  // what it holds is plaintext: zeroed before it is freed

 private:
  std::unique_ptr<uint8_t[]> ring_;
  size_t capacity_ = 0;
  uint64_t pos_ = 0, kept_ = 0;  // it holds [pos_ - kept_, pos_)
};

// A decoder's state, as an index keeps it in a cursor.
struct DecoderState {
  virtual ~DecoderState() { recent.wipe(); }
  RecentOutput recent;  // pos(): the decompressed offset of the next byte out
};

// One reader's place in a compressed stream (an open file's): a decoder where its last read
// stopped, or none. At most kMaxDecoders cursors hold one at once, process-wide (each up to its
// window and kRecentBytes); a reader that finds them all held takes the one idle longest, if idle
// for kIdleBeforeTaken, so open files that no longer read cannot starve the ones that do; else it
// decodes afresh, as without a cursor. Thread-safe: a read holds the cursor's lock.
class DecoderCursor {
 public:
  static constexpr size_t kMaxDecoders = 16;
  static constexpr size_t kRecentBytes = 8 << 20;
  static constexpr std::chrono::milliseconds kIdleBeforeTaken{1000};

  DecoderCursor() = default;
  ~DecoderCursor() { release(); }
  DecoderCursor(const DecoderCursor&) = delete;
  DecoderCursor& operator=(const DecoderCursor&) = delete;

  // The cursor held for one read: its decoder is dropped as the hold ends if drop_all() asked.
  class Hold {
   public:
    explicit Hold(DecoderCursor* c) : c_(c) {}
    Hold(Hold&& o) noexcept : c_(o.c_) { o.c_ = nullptr; }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    Hold& operator=(Hold&&) = delete;
    ~Hold() {
      if (c_ == nullptr) return;
      if (c_->drop_.exchange(false)) c_->forget();
      c_->last_used_ms_ = now_ms();  // idle from the end of its read, not its start
      c_->mu_.unlock();
    }

   private:
    DecoderCursor* c_;
  };
  Hold lock();
  // The decoder of type S, made (with a ring of kRecentBytes) if there is none and one may be
  // kept; null otherwise. REQUIRES: lock() held.
  template <class S>
  S* state() {
    if (auto* s = dynamic_cast<S*>(state_.get())) return s;
    if (!state_ && !take_slot()) return nullptr;  // no allocation for a reader that gets no slot
    try {
      auto s = std::make_unique<S>();
      s->recent = RecentOutput(kRecentBytes);
      state_ = std::move(s);
    } catch (...) {
      forget();  // a failed allocation must not hold a slot
      throw;
    }
    return static_cast<S*>(state_.get());
  }
  // What an index's read decodes with: the state kept in `cursor` (held in `held` for the read),
  // or `local` when there is no cursor or no slot for it.
  template <class S>
  static S* use(DecoderCursor* cursor, S& local, std::optional<Hold>& held) {
    if (cursor == nullptr) return &local;
    held.emplace(cursor->lock());
    S* kept = cursor->state<S>();
    return kept != nullptr ? kept : &local;
  }
  void release();  // drops the decoder (the reader is done)
  static int64_t now_ms();
  // Drops every decoder, at once or as its read ends: what they decoded is plaintext (revocation).
  static void drop_all();

 private:
  bool take_slot();  // REQUIRES: mu_
  void forget();     // REQUIRES: mu_
  std::mutex mu_;
  std::unique_ptr<DecoderState> state_;
  std::atomic<int64_t> last_used_ms_{0};
  std::atomic<bool> drop_{false};
};

}  // namespace cmkfs::oci
