#include "keyclient/host_path.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <vector>

namespace cmkfs::keyclient {
namespace {

constexpr int kMaxLinks = 40;  // as the kernel's path walk

bool host_owned(const struct stat& st) { return st.st_uid == 0 || st.st_uid == ::geteuid(); }

// Why `st` is not the host's own, or nullptr.
const char* owner_problem(const struct stat& st) {
  if (!host_owned(st)) return "belongs to another user";
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) return "may be written by group or others";
  return nullptr;
}

void push_front_components(std::deque<std::string>* todo, const std::filesystem::path& p) {
  std::deque<std::string> parts;
  for (const auto& c : p.relative_path()) parts.push_back(c.string());
  todo->insert(todo->begin(), parts.begin(), parts.end());
}

// Walks `path` from / one name at a time, as the kernel does, checking each directory it passes
// (the host's, unwritable by others unless sticky) and each link it follows (the host's: a link
// is replaced by whoever owns it, whatever its directory). With `last`, the final name too: its
// link followed and checked, the file it names checked with check_host_owner.
Status walk(const std::string& path, const std::string& what, bool last) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  if (ec) return Status(EACCES, "cannot resolve " + what + " " + path + ": " + ec.message());
  std::deque<std::string> todo;
  push_front_components(&todo, last ? p : p.parent_path());
  std::filesystem::path at = "/";
  auto refused = [&](const std::string& where, const char* problem) {
    return Status::AccessDenied(what + " " + path + " is in " + where + ", which " + problem +
                                ": whoever can write there can replace it");
  };
  // Sticky: others may add names there but not replace ours (in a directory of the host's only).
  auto dir_problem = [](const struct stat& st) -> const char* {
    const char* problem = owner_problem(st);
    return problem != nullptr && host_owned(st) && (st.st_mode & S_ISVTX) ? nullptr : problem;
  };
  struct stat st;
  if (::stat("/", &st) != 0) return Status(EACCES, "cannot check /");
  if (const char* problem = dir_problem(st)) return refused("/", problem);
  int links = 0;
  while (!todo.empty()) {
    std::string name = todo.front();
    todo.pop_front();
    if (name.empty() || name == ".") continue;
    if (name == "..") {
      at = at.parent_path();
      continue;
    }
    std::filesystem::path next = at / name;
    if (::lstat(next.c_str(), &st) != 0) {
      int err = errno;
      return Status(err == ENOENT ? ENOENT : EACCES,
                    "cannot check " + next.string() + " on the way to " + what + " " + path + ": " + std::strerror(err));
    }
    if (S_ISLNK(st.st_mode)) {
      if (!host_owned(st)) return refused(next.string() + " (a link)", "belongs to another user");
      if (++links > kMaxLinks) return Status(ELOOP, "too many links on the way to " + what + " " + path);
      std::vector<char> target(4096);
      ssize_t n = ::readlink(next.c_str(), target.data(), target.size());
      if (n <= 0 || size_t(n) >= target.size()) return Status(EACCES, "cannot read the link " + next.string());
      std::filesystem::path to(std::string(target.data(), size_t(n)));
      push_front_components(&todo, to);
      if (to.is_absolute()) at = "/";
      continue;
    }
    if (todo.empty() && last) return check_host_owner(st, path, what);  // the file itself
    if (!S_ISDIR(st.st_mode)) return Status(ENOTDIR, next.string() + " on the way to " + what + " " + path + " is not a directory");
    if (const char* problem = dir_problem(st)) return refused(next.string(), problem);
    at = next;
  }
  // A file's last name was "." or "..", or a link ending in one: what it names is a directory.
  if (last) return Status::InvalidArgument(what + " " + path + " is a directory");
  return Status::Ok();
}

}  // namespace

Status check_host_owner(const struct stat& st, const std::string& path, const std::string& what) {
  const char* problem = owner_problem(st);
  return problem == nullptr ? Status::Ok() : Status::AccessDenied(what + " " + path + " " + problem);
}

Status check_host_dirs(const std::string& path, const std::string& what) { return walk(path, what, false); }

Status check_host_file(const std::string& path, const std::string& what) { return walk(path, what, true); }

}  // namespace cmkfs::keyclient
