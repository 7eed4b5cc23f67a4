#include "fs/daemon/views.h"

#include <sys/stat.h>

#include "fs/oci/oci.h"

namespace cmkfs::fs {

Status Views::attach(const std::string& dir, const std::string& registry_root) {
  struct stat st;
  if (dir.empty() || dir.front() != '/') return Status::InvalidArgument("the view directory must be an absolute path");
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return Status(ENOTDIR, dir + " is not a directory");
  for (const auto& m : current_mounts()) {
    if (m.target == dir) return Status(EBUSY, dir + " is busy: " + m.source + " is mounted there");
  }
  auto view = std::make_unique<RegistryView>(fs_, keyring_, ViewOptions{.registry_root = registry_root});
  auto session = ViewSession::start(std::move(view), dir, source_);
  if (!session.ok()) return session.status();
  std::lock_guard<std::mutex> g(mu_);
  sessions_.push_back(std::move(*session));
  return Status::Ok();
}

size_t Views::reap() {
  std::vector<std::unique_ptr<ViewSession>> done;
  std::lock_guard<std::mutex> g(mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if ((*it)->finished()) {
      done.push_back(std::move(*it));
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
  return sessions_.size();
}

void Views::invalidate() {
  oci::DecoderCursor::drop_all();  // what the open rootfs/ files decoded last is plaintext
  std::lock_guard<std::mutex> g(mu_);
  for (auto& s : sessions_) s->invalidate();
}

void Views::clear() {
  std::vector<std::unique_ptr<ViewSession>> all;
  {
    std::lock_guard<std::mutex> g(mu_);
    all.swap(sessions_);
  }
}

}  // namespace cmkfs::fs
