#include "fs/store/object_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/base/hex.h"
#include "fs/store/private_fs.h"
#include "fs/store/rados_object_store.h"

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

class UnreachableObjectStore : public ObjectStore {
 public:
  explicit UnreachableObjectStore(Status why) : why_(std::move(why)) {}
  Result<std::unique_ptr<ObjectFile>> open(const Id128&, bool) override { return why_; }
  Status remove(const Id128&) override { return why_; }
  Result<struct statvfs> statfs() override { return why_; }
  Status list(const std::function<void(const Id128&)>&, const std::function<void(const std::string&)>&) override {
    return why_;
  }

 private:
  Status why_;
};

// Pool, namespace and client names: what Ceph accepts, and nothing a shell or a path would read
// differently.
bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 100 || s[0] == '.' || s[0] == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

Status check(const ObjectsConfig& c) {
  if (c.kind == "local") return Status::Ok();
  if (c.kind != "rados") return Status::InvalidArgument("unknown object store kind '" + c.kind + "'");
  if (!valid_name(c.pool)) return Status::InvalidArgument("bad RADOS pool name '" + c.pool + "'");
  if (!c.ns.empty() && !valid_name(c.ns)) return Status::InvalidArgument("bad RADOS namespace '" + c.ns + "'");
  if (!c.user.empty() && !valid_name(c.user)) return Status::InvalidArgument("bad Ceph client name '" + c.user + "'");
  if (c.object_size < (64 << 10) || c.object_size > (64 << 20) || (c.object_size & (c.object_size - 1)) != 0) {
    return Status::InvalidArgument("bad RADOS object size " + std::to_string(c.object_size));
  }
  if (c.layout != ObjectsConfig::kRadosLayout) {
    return Status(ENOTSUP, "RADOS object layout " + std::to_string(c.layout) + " is not one this cmkfs reads (" +
                               std::to_string(ObjectsConfig::kRadosLayout) + ")");
  }
  return Status::Ok();
}

}  // namespace

Result<ObjectsConfig> ObjectsConfig::from_url(std::string_view url) {
  constexpr std::string_view kScheme = "rados://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return Status::InvalidArgument("--objects takes rados://POOL[/NAMESPACE], not '" + std::string(url) + "'");
  }
  std::string_view rest = url.substr(kScheme.size());
  ObjectsConfig c;
  c.kind = "rados";
  c.object_size = kRadosObjectSize;
  c.layout = kRadosLayout;
  size_t slash = rest.find('/');
  c.pool = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) c.ns = std::string(rest.substr(slash + 1));
  if (slash != std::string_view::npos && c.ns.empty()) return Status::InvalidArgument("empty RADOS namespace in " + std::string(url));
  c.conf = "/etc/ceph/ceph.conf";
  c.user = "admin";
  CMKFS_RETURN_IF_ERROR(check(c));
  return c;
}

std::string ObjectsConfig::url() const { return local() ? "local" : "rados://" + pool + (ns.empty() ? "" : "/" + ns); }

std::string ObjectsConfig::public_json() const {
  if (local()) return "";
  return nlohmann::json{{"kind", kind}, {"pool", pool}, {"namespace", ns}, {"object_size", object_size}, {"layout", layout}}
      .dump();
}

std::string ObjectsConfig::host_json() const {
  auto j = nlohmann::json::parse(local() ? R"({"kind":"local"})" : public_json());
  if (!local()) j.update({{"conf", conf}, {"user", user}});
  return j.dump();
}

Result<ObjectsConfig> ObjectsConfig::from_json(std::string_view text) {
  ObjectsConfig c;
  try {
    auto j = nlohmann::json::parse(text);
    c.kind = j.at("kind").get<std::string>();
    c.pool = j.value("pool", std::string());
    c.ns = j.value("namespace", std::string());
    c.conf = j.value("conf", std::string());
    c.user = j.value("user", std::string());
    c.object_size = j.value("object_size", uint64_t{0});
    c.layout = j.value("layout", uint32_t{0});
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(std::string("bad object store settings: ") + e.what());
  }
  Status s = check(c);
  if (!s.ok()) return s.code() == ENOTSUP ? s : Status::Corruption(s.message());
  return c;
}

std::unique_ptr<ObjectStore> unreachable_object_store(Status why) {
  return std::make_unique<UnreachableObjectStore>(std::move(why));
}

Result<std::unique_ptr<ObjectStore>> open_object_store(const ObjectsConfig& config, int store_dir) {
  if (config.local()) return open_local_object_store(store_dir);
  if (config.kind == "rados") return open_rados_object_store(config);
  return Status(ENOTSUP, "object store kind '" + config.kind + "' is not supported");
}

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
