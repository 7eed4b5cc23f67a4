#include "fs/oci/decoder_cursor.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

namespace cmkfs::oci {
namespace {

// The cursors holding a decoder. Lock order: a cursor's, then this; this, then a cursor's only by
// try_lock (a reader that holds its own asks for a slot here).
struct Holders {
  std::mutex mu;
  std::set<DecoderCursor*> cursors;
};
Holders& holders() {
  static Holders* h = new Holders;  // never destroyed: cursors may outlive statics
  return *h;
}

}  // namespace

int64_t DecoderCursor::now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void RecentOutput::wipe() {
  // Only what it holds: the rest of the ring was never written (and its pages never touched).
  for (uint64_t at = pos_ - kept_; at < pos_;) {
    size_t i = static_cast<size_t>(at % capacity_), m = static_cast<size_t>(std::min<uint64_t>(pos_ - at, capacity_ - i));
    ::explicit_bzero(ring_.get() + i, m);
    at += m;
  }
  kept_ = 0;
}

void RecentOutput::append(const uint8_t* p, size_t k) {
  size_t r = capacity_;
  uint64_t end = pos_ + k;
  if (r > 0) {
    uint64_t at = pos_;
    if (k > r) p += k - r, at += k - r, k = r;
    while (k > 0) {
      size_t i = static_cast<size_t>(at % r), m = std::min(k, r - i);
      std::memcpy(ring_.get() + i, p, m);
      p += m, at += m, k -= m;
    }
  }
  kept_ = std::min<uint64_t>(r, kept_ + (end - pos_));
  pos_ = end;
}

size_t RecentOutput::recall(uint64_t offset, uint8_t* out, size_t len) const {
  if (offset >= pos_ || offset < pos_ - kept_) return 0;
  size_t r = capacity_, total = static_cast<size_t>(std::min<uint64_t>(len, pos_ - offset)), done = 0;
  while (done < total) {
    size_t i = static_cast<size_t>((offset + done) % r), m = std::min(total - done, r - i);
    std::memcpy(out + done, ring_.get() + i, m);
    done += m;
  }
  return total;
}

DecoderCursor::Hold DecoderCursor::lock() {
  mu_.lock();
  last_used_ms_ = now_ms();
  if (drop_.exchange(false)) forget();
  return Hold(this);
}

void DecoderCursor::forget() {
  state_.reset();
  std::lock_guard<std::mutex> g(holders().mu);
  holders().cursors.erase(this);
}

bool DecoderCursor::take_slot() {
  Holders& h = holders();
  std::lock_guard<std::mutex> g(h.mu);
  if (h.cursors.size() >= kMaxDecoders) {
    // The idlest first; one reading now (its lock held) is skipped.
    std::vector<DecoderCursor*> idle;
    int64_t now = now_ms();
    for (DecoderCursor* c : h.cursors) {
      if (now - c->last_used_ms_ >= kIdleBeforeTaken.count()) idle.push_back(c);
    }
    std::sort(idle.begin(), idle.end(), [](DecoderCursor* a, DecoderCursor* b) { return a->last_used_ms_ < b->last_used_ms_; });
    DecoderCursor* victim = nullptr;
    for (DecoderCursor* c : idle) {
      if (c->mu_.try_lock()) {
        victim = c;
        break;
      }
    }
    if (victim == nullptr) return false;
    victim->state_.reset();
    h.cursors.erase(victim);
    victim->mu_.unlock();
  }
  h.cursors.insert(this);
  return true;
}

void DecoderCursor::release() {
  std::lock_guard<std::mutex> g(mu_);
  forget();
}

void DecoderCursor::drop_all() {
  Holders& h = holders();
  std::lock_guard<std::mutex> g(h.mu);
  for (auto it = h.cursors.begin(); it != h.cursors.end();) {
    DecoderCursor* c = *it;
    if (!c->mu_.try_lock()) {  // reading now: it drops its decoder when it next reads or closes
      c->drop_ = true;
      ++it;
      continue;
    }
    c->state_.reset();
    c->mu_.unlock();
    it = h.cursors.erase(it);
  }
}

}  // namespace cmkfs::oci
