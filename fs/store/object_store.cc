#include "fs/store/object_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "crypto/base/hex.h"
#include "fs/store/private_fs.h"

namespace cmkfs::fs {
namespace {

Status errno_status(int err, const std::string& what) { return Status::IOError(err, what + ": " + std::strerror(err)); }

class LocalObjectFile : public ObjectFile {
 public:
  explicit LocalObjectFile(int fd) : fd_(fd) {}
  ~LocalObjectFile() override { ::close(fd_); }

  Result<size_t> read_at(uint64_t offset, crypto::MutableBytes buf) override {
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t n = ::pread(fd_, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status(errno, "reading object");
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }

  Status write_at(uint64_t offset, crypto::Bytes data) override {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status(errno, "writing object");
      }
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  Status truncate(uint64_t length) override {
    if (::ftruncate(fd_, static_cast<off_t>(length)) != 0) return errno_status(errno, "truncating object");
    return Status::Ok();
  }

  Result<uint64_t> length() override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return errno_status(errno, "stat of object");
    return static_cast<uint64_t>(st.st_size);
  }

  Status sync() override {
    if (::fdatasync(fd_) != 0) return errno_status(errno, "syncing object");
    return Status::Ok();
  }

 private:
  int fd_;
};

// Every object is opened relative to its directory's descriptor, with O_NOFOLLOW: a link planted
// in the store (objects/xx -> /etc, or an object -> a file elsewhere) is refused, not followed.
class LocalObjectStore : public ObjectStore {
 public:
  LocalObjectStore(Fd objects, std::vector<Fd> subdirs) : objects_(std::move(objects)), subdirs_(std::move(subdirs)) {}

  Result<std::unique_ptr<ObjectFile>> open(const Id128& id, bool create) override {
    std::string name = to_hex(id);
    auto fd = open_private_file(subdir(id), name, O_RDWR | (create ? O_CREAT : 0), "object " + name);
    if (!fd.ok()) {
      if (fd.status().code() == ENOENT) return Status::NotFound("object " + name + " is missing");
      return fd.status();
    }
    return std::unique_ptr<ObjectFile>(new LocalObjectFile(fd->release()));
  }

  Status remove(const Id128& id) override {
    if (::unlinkat(subdir(id), to_hex(id).c_str(), 0) != 0 && errno != ENOENT) return errno_status(errno, "removing object");
    return Status::Ok();
  }

  Status list(const std::function<void(const Id128&)>& fn,
              const std::function<void(const std::string&)>& stray) override {
    Status s;
    for_each_name(objects_.get(), [&](const std::string& prefix, unsigned char type) {
      auto b = from_hex(prefix);
      if (type != DT_DIR || !b || b->size() != 1) return stray("objects/" + prefix);
      for_each_name(subdirs_[(*b)[0]].get(), [&](const std::string& name, unsigned char t) {
        auto bytes = from_hex(name);
        Id128 id{};
        if (t != DT_REG || !bytes || bytes->size() != id.size() || name.compare(0, 2, prefix) != 0) {
          return stray("objects/" + prefix + "/" + name);
        }
        std::copy(bytes->begin(), bytes->end(), id.begin());
        fn(id);
      }, &s);
    }, &s);
    return s;
  }

  Result<struct statvfs> statfs() override {
    struct statvfs st;
    if (::fstatvfs(objects_.get(), &st) != 0) return errno_status(errno, "statfs of the store");
    return st;
  }

 private:
  int subdir(const Id128& id) const { return subdirs_[id[0]].get(); }

  // Calls fn(name, d_type) for each entry of directory `dir` but . and ..; the first error in *s.
  template <class Fn>
  static void for_each_name(int dir, Fn&& fn, Status* s) {
    int fd = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* d = fd >= 0 ? ::fdopendir(fd) : nullptr;
    if (d == nullptr) {
      if (fd >= 0) ::close(fd);
      if (s->ok()) *s = errno_status(errno, "listing objects");
      return;
    }
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      fn(name, e->d_type);
    }
    ::closedir(d);
  }

  Fd objects_;
  std::vector<Fd> subdirs_;  // objects/00 .. objects/ff
};

}  // namespace

Status create_object_dirs(const std::string& objects_dir) {
  if (::mkdir(objects_dir.c_str(), 0700) != 0 && errno != EEXIST) return errno_status(errno, "mkdir " + objects_dir);
  for (int i = 0; i < 256; ++i) {
    uint8_t b = static_cast<uint8_t>(i);
    std::string d = objects_dir + "/" + to_hex(std::span<const uint8_t>(&b, 1));
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return errno_status(errno, "mkdir " + d);
  }
  return Status::Ok();
}

Result<std::unique_ptr<ObjectStore>> open_local_object_store(int store_dir) {
  auto objects = open_private_dir(store_dir, "objects", "objects/");
  if (!objects.ok()) return objects.status();
  std::vector<Fd> subdirs;
  subdirs.reserve(256);
  for (int i = 0; i < 256; ++i) {
    uint8_t b = static_cast<uint8_t>(i);
    std::string name = to_hex(std::span<const uint8_t>(&b, 1));
    auto sub = open_private_dir(objects->get(), name, "objects/" + name);
    if (!sub.ok()) return sub.status();
    subdirs.push_back(std::move(*sub));
  }
  return std::unique_ptr<ObjectStore>(new LocalObjectStore(std::move(*objects), std::move(subdirs)));
}

}  // namespace cmkfs::fs
