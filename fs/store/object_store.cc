#include "fs/store/object_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "crypto/base/hex.h"

namespace cmkfs::fs {
namespace {

namespace stdfs = std::filesystem;

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

class LocalObjectStore : public ObjectStore {
 public:
  explicit LocalObjectStore(std::string dir) : dir_(std::move(dir)) {}

  Result<std::unique_ptr<ObjectFile>> open(const Id128& id, bool create) override {
    std::string p = path(id);
    int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
    if (fd < 0) {
      if (errno == ENOENT) return Status::NotFound("object " + to_hex(id) + " is missing");
      return errno_status(errno, "opening object " + to_hex(id));
    }
    return std::unique_ptr<ObjectFile>(new LocalObjectFile(fd));
  }

  Status remove(const Id128& id) override {
    if (::unlink(path(id).c_str()) != 0 && errno != ENOENT) return errno_status(errno, "removing object");
    return Status::Ok();
  }

  Status list(const std::function<void(const Id128&)>& fn,
              const std::function<void(const std::string&)>& stray) override {
    std::error_code ec;
    for (const auto& sub : stdfs::directory_iterator(dir_, ec)) {
      std::string prefix = sub.path().filename().string();
      if (!sub.is_directory() || prefix.size() != 2 || !from_hex(prefix)) {
        stray(sub.path().string());
        continue;
      }
      for (const auto& e : stdfs::directory_iterator(sub.path(), ec)) {
        std::string name = e.path().filename().string();
        auto bytes = from_hex(name);
        Id128 id{};
        if (!e.is_regular_file() || !bytes || bytes->size() != id.size() || name.compare(0, 2, prefix) != 0) {
          stray(e.path().string());
          continue;
        }
        std::copy(bytes->begin(), bytes->end(), id.begin());
        fn(id);
      }
      if (ec) break;
    }
    if (ec) return Status::IOError(ec.value(), "listing objects: " + ec.message());
    return Status::Ok();
  }

  Result<struct statvfs> statfs() override {
    struct statvfs st;
    if (::statvfs(dir_.c_str(), &st) != 0) return errno_status(errno, "statfs of the store");
    return st;
  }

 private:
  std::string path(const Id128& id) const {
    return dir_ + "/" + to_hex(std::span<const uint8_t>(id.data(), 1)) + "/" + to_hex(id);
  }
  std::string dir_;
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

std::unique_ptr<ObjectStore> make_local_object_store(const std::string& objects_dir) {
  return std::make_unique<LocalObjectStore>(objects_dir);
}

}  // namespace cmkfs::fs
