#include "fs/store/host.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "crypto/base/hex.h"
#include "crypto/base/json_integer.h"
#include "fs/store/private_fs.h"

namespace cmkfs::fs {
namespace {

using nlohmann::json;

constexpr size_t kMaxBindingBytes = 64 << 10;

Status errno_status(int err, const std::string& what) { return Status::IOError(err, what + ": " + std::strerror(err)); }

std::string stores_dir() { return host_config_dir() + "/stores"; }

}  // namespace

std::string host_config_dir() {
  if (const char* d = std::getenv("CMKFS_CONFIG_DIR"); d != nullptr && *d != '\0') return d;
  if (::geteuid() == 0) return "/etc/cmkfs";
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x != nullptr && *x != '\0') return std::string(x) + "/cmkfs";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : ".") + "/.config/cmkfs";
}

std::string binding_path(const Id128& store_id) { return stores_dir() + "/" + to_hex(store_id) + ".json"; }

Result<keyclient::KekConfig> HostBinding::match(const keyclient::KekConfig& store_kek) const {
  std::string diff = store_kek.differences(kek);
  if (diff.empty()) return kek;
  if (next && store_kek.differences(*next).empty()) return *next;
  while (!diff.empty() && diff.back() == '\n') diff.pop_back();
  for (auto& c : diff) c = c == '\n' ? ';' : c;
  return Status(EUCLEAN, "the store's key settings differ from this host's binding of it: " + diff);
}

std::string HostBinding::to_json() const {
  json fps = json::object();
  for (const auto& [gen, fp] : fingerprints) fps[std::to_string(gen)] = fp;
  json j{{"store_id", to_hex(store_id)}, {"kek", json::parse(kek.to_json())}, {"fingerprints", fps},
         {"generation", generation}};
  if (next) j["next"] = json::parse(next->to_json());
  if (!objects.local()) j["objects"] = json::parse(objects.host_json());
  if (!meta.lmdb()) j["meta"] = json::parse(meta.host_json());
  return j.dump(2);
}

Result<HostBinding> HostBinding::from_json(std::string_view text) {
  try {
    json j = json::parse(text);
    HostBinding b;
    auto id = from_hex(j.at("store_id").get<std::string>());
    if (!id || id->size() != b.store_id.size()) return Status::Corruption("host binding: bad store id");
    std::copy(id->begin(), id->end(), b.store_id.begin());
    auto kek = keyclient::KekConfig::from_json(j.at("kek").dump());
    if (!kek.ok()) return kek.status();
    b.kek = std::move(*kek);
    if (j.contains("next")) {
      auto next = keyclient::KekConfig::from_json(j["next"].dump());
      if (!next.ok()) return next.status();
      b.next = std::move(*next);
    }
    b.generation = json_integer_or(j, "generation", uint32_t{0});
    if (j.contains("objects")) {
      auto objects = ObjectsConfig::from_json(j["objects"].dump());
      if (!objects.ok()) return objects.status();
      b.objects = std::move(*objects);
    }
    if (j.contains("meta")) {
      auto meta = MetaConfig::from_json(j["meta"].dump());
      if (!meta.ok()) return meta.status();
      b.meta = std::move(*meta);
    }
    for (const auto& [gen, fp] : j.at("fingerprints").items()) {
      b.fingerprints[static_cast<uint32_t>(std::stoul(gen))] = fp.get<std::string>();
    }
    return b;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("host binding is damaged: ") + e.what());
  }
}

Result<HostBinding> load_binding(const Id128& store_id) {
  std::string dir = stores_dir(), path = binding_path(store_id);
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::NotFound("no binding for store " + to_hex(store_id) + " on this host");
    return errno_status(errno, dir);
  }
  if (!S_ISDIR(st.st_mode)) return Status::AccessDenied(dir + " is not a directory");
  CMKFS_RETURN_IF_ERROR(check_private(st, dir, true, false));
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("no binding for store " + to_hex(store_id) + " on this host");
    if (errno == ELOOP) return Status::AccessDenied(path + " is a symbolic link");
    return errno_status(errno, path);
  }
  std::string text;
  Status s = [&]() -> Status {
    if (::fstat(fd, &st) != 0) return errno_status(errno, path);
    if (!S_ISREG(st.st_mode)) return Status::AccessDenied(path + " is not a regular file");
    CMKFS_RETURN_IF_ERROR(check_private(st, path, false, false));
    if (static_cast<size_t>(st.st_size) > kMaxBindingBytes) return Status::Corruption(path + " is too large");
    text.resize(static_cast<size_t>(st.st_size));
    ssize_t n = ::pread(fd, text.data(), text.size(), 0);
    if (n != static_cast<ssize_t>(text.size())) return errno_status(n < 0 ? errno : EIO, "reading " + path);
    return Status::Ok();
  }();
  ::close(fd);
  CMKFS_RETURN_IF_ERROR(s);
  auto b = HostBinding::from_json(text);
  if (!b.ok()) return Status::Corruption(path + ": " + b.status().message());
  if (b->store_id != store_id) return Status::Corruption(path + " binds another store");
  return b;
}

Status save_binding(const HostBinding& b) {
  std::string config = host_config_dir(), dir = stores_dir();
  for (const std::string& d : {config, dir}) {
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return errno_status(errno, "creating " + d);
  }
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) return errno_status(errno, dir);
  if (!S_ISDIR(st.st_mode)) return Status::AccessDenied(dir + " is not a directory");
  CMKFS_RETURN_IF_ERROR(check_private(st, dir, true, false));
  std::string path = binding_path(b.store_id), tmp = path + ".tmp";
  std::string text = b.to_json() + "\n";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return errno_status(errno, "creating " + tmp);
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    return errno_status(err, "writing " + path);
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

Result<HostBinding> update_binding(const Id128& store_id, const std::function<Status(HostBinding&)>& change) {
  std::string config = host_config_dir(), dir = stores_dir();
  for (const std::string& d : {config, dir}) {
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return errno_status(errno, "creating " + d);
  }
  auto lock = open_private_file(AT_FDCWD, dir + "/.lock", O_RDWR | O_CREAT, dir + "/.lock");
  if (!lock.ok()) return lock.status();
  if (::flock(lock->get(), LOCK_EX) != 0) return errno_status(errno, "locking " + dir);
  auto current = load_binding(store_id);
  if (!current.ok() && current.status().code() != ENOENT) return current.status();
  HostBinding b = current.ok() ? std::move(*current) : HostBinding{};
  b.store_id = store_id;
  CMKFS_RETURN_IF_ERROR(change(b));
  CMKFS_RETURN_IF_ERROR(save_binding(b));
  return b;  // the lock goes with `lock`
}

}  // namespace cmkfs::fs
