#include "keyclient/host_path.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace cmkfs::keyclient {
namespace {

// Why `st` is not the host's own, or nullptr.
const char* owner_problem(const struct stat& st) {
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) return "belongs to another user";
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) return "may be written by group or others";
  return nullptr;
}

Status check_dir(const std::filesystem::path& dir, const std::string& path, const std::string& what) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    int err = errno;
    return Status(err == ENOENT ? ENOENT : EACCES,
                  "cannot check the directory " + dir.string() + " of " + what + " " + path + ": " + std::strerror(err));
  }
  if ((st.st_mode & S_ISVTX) && (st.st_mode & S_IWOTH)) return Status::Ok();
  const char* problem = owner_problem(st);
  if (problem == nullptr) return Status::Ok();
  return Status::AccessDenied(what + " " + path + " is in " + dir.string() + ", which " + problem +
                              ": whoever can write there can replace it");
}

Status check_chain(const std::filesystem::path& from, const std::string& path, const std::string& what) {
  for (auto dir = from;; dir = dir.parent_path()) {
    CMKFS_RETURN_IF_ERROR(check_dir(dir, path, what));
    if (dir == dir.parent_path() || dir.empty()) return Status::Ok();
  }
}

}  // namespace

Status check_host_owner(const struct stat& st, const std::string& path, const std::string& what) {
  const char* problem = owner_problem(st);
  return problem == nullptr ? Status::Ok() : Status::AccessDenied(what + " " + path + " " + problem);
}

Status check_host_dirs(const std::string& path, const std::string& what) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  if (ec) return Status(EACCES, "cannot resolve " + what + " " + path + ": " + ec.message());
  CMKFS_RETURN_IF_ERROR(check_chain(p.lexically_normal().parent_path(), path, what));
  auto real = std::filesystem::weakly_canonical(p, ec);
  if (ec) return Status(EACCES, "cannot resolve " + what + " " + path + ": " + ec.message());
  if (real.parent_path() == p.lexically_normal().parent_path()) return Status::Ok();
  return check_chain(real.parent_path(), path, what);
}

}  // namespace cmkfs::keyclient
