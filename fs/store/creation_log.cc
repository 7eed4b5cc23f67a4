#include "fs/store/creation_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "crypto/base/coding.h"
#include "fs/store/private_fs.h"

namespace cmkfs::fs {

Result<std::unique_ptr<CreationLog>> CreationLog::open(int meta_dir_fd, bool writable) {
  std::unique_ptr<CreationLog> log(new CreationLog());
  for (int i = 0; i < 2; ++i) {
    std::string name = "created." + std::to_string(i);
    int flags = writable ? O_RDWR | O_CREAT | O_APPEND : O_RDONLY;
    auto fd = open_private_file(meta_dir_fd, name, flags, "meta/" + name);
    if (!fd.ok() && !writable && fd.status().code() == ENOENT) continue;
    if (!fd.ok()) return fd.status();
    log->fds_[i] = fd->release();
  }
  return log;
}

CreationLog::~CreationLog() {
  for (int fd : fds_) {
    if (fd >= 0) ::close(fd);
  }
}

// The domain keeps the tag apart from the name key's other use, a directory entry's home slot
// (be64 parent | name): no name holds a '/'.
void CreationLog::tag(const crypto::HmacKey& key, uint8_t* rec) {
  static constexpr char kDomain[] = "cmkfs/v1/created";
  uint8_t msg[sizeof kDomain - 1 + kBody];
  std::memcpy(msg, kDomain, sizeof kDomain - 1);
  std::memcpy(msg + sizeof kDomain - 1, rec, kBody);
  crypto::Mac256 mac = key.mac({msg, sizeof msg});
  std::memcpy(rec + kBody, mac.data(), kTag);
}

Result<int> CreationLog::note(uint64_t ino, const Id128& file_id, const crypto::HmacKey& name_key) {
  int ticket;
  {
    std::lock_guard<std::mutex> g(mu_);
    ticket = current_;
    ++in_flight_[ticket];
  }
  uint8_t rec[kRecord];
  put_be64(rec, ino);
  std::memcpy(rec + 8, file_id.data(), file_id.size());
  tag(name_key, rec);
  // O_APPEND: one write(2) of a record is one record, whoever else appends.
  if (::write(fds_[ticket], rec, sizeof rec) != static_cast<ssize_t>(sizeof rec)) {
    int err = errno;
    --in_flight_[ticket];
    return Status::IOError(err, std::string("noting a new object: ") + std::strerror(err));
  }
  return ticket;
}

void CreationLog::committed(int ticket) { --in_flight_[ticket]; }

void CreationLog::maybe_turn(const std::function<void(std::function<void()>)>& when_durable) {
  std::unique_lock<std::mutex> g(mu_);
  int old = 1 - current_;
  if (retiring_) {
    // The retired file is emptied once no create it noted is in flight and what committed is on
    // disk; the truncation runs later, on the thread that learns the batch is durable.
    if (in_flight_[old] != 0) return;
    retiring_ = false;
    int fd = fds_[old];
    // Not under mu_: when_durable takes the metadata batch's lock, which a create holds while it
    // waits for mu_ in note() (a deadlock seen after ~64,000 creates). Nothing writes the old
    // file meanwhile, and no turn comes back to it before it is empty.
    g.unlock();
    when_durable([fd] { (void)!::ftruncate(fd, 0); });
    return;
  }
  struct stat st;
  if (::fstat(fds_[current_], &st) != 0 || st.st_size < kTurnAt) return;
  struct stat other;
  if (::fstat(fds_[old], &other) != 0 || other.st_size != 0) return;  // still being emptied
  current_ = old;
  retiring_ = true;
}

Result<std::vector<CreationLog::Entry>> CreationLog::entries(const crypto::HmacKey& name_key, size_t* unauthentic) {
  std::vector<Entry> out;
  if (unauthentic != nullptr) *unauthentic = 0;
  for (int fd : fds_) {
    if (fd < 0) continue;
    struct stat st;
    if (::fstat(fd, &st) != 0) return Status::IOError(errno, "reading the creation log");
    // A mount turns files at 1 MiB; one made huge (sparse) by the store's writer is read no
    // further than any mount could have written (what is past it at worst leaks objects).
    std::vector<uint8_t> buf(static_cast<size_t>(std::min<off_t>(st.st_size, kReadAtMost)));
    if (!buf.empty() && ::pread(fd, buf.data(), buf.size(), 0) != static_cast<ssize_t>(buf.size())) {
      return Status::IOError(errno, "reading the creation log");
    }
    for (size_t at = 0; at + kRecord <= buf.size(); at += kRecord) {
      uint8_t expect[kRecord];
      std::memcpy(expect, buf.data() + at, kBody);
      tag(name_key, expect);
      if (!crypto::equal_constant_time({expect + kBody, kTag}, {buf.data() + at + kBody, kTag})) {
        if (unauthentic != nullptr) ++*unauthentic;
        continue;
      }
      Entry e;
      e.ino = get_be64(buf.data() + at);
      std::memcpy(e.file_id.data(), buf.data() + at + 8, e.file_id.size());
      out.push_back(e);
    }
  }
  return out;
}

Status CreationLog::clear() {
  std::lock_guard<std::mutex> g(mu_);
  for (int fd : fds_) {
    if (::ftruncate(fd, 0) != 0) return Status::IOError(errno, "emptying the creation log");
  }
  retiring_ = false;
  return Status::Ok();
}

}  // namespace cmkfs::fs
