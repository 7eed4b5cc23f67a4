#include "fs/fuse/mount_table.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include <fstream>
#include <sstream>

#include "keyclient/host_path.h"

namespace cmkfs::fs {
namespace {

std::string unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    bool octal = field[i] == '\\' && i + 3 < field.size() && field.find_first_not_of("01234567", i + 1) >= i + 4;
    if (octal) {
      out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

}  // namespace

std::vector<MountEntry> parse_mountinfo(const std::string& text) {
  std::vector<MountEntry> mounts;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    // id parent MAJOR:MINOR root mountpoint options [optional fields...] - fstype source superopts
    std::istringstream in(line);
    std::vector<std::string> f;
    for (std::string w; in >> w;) f.push_back(w);
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash + 2 >= f.size()) continue;
    mounts.push_back({f[2], unescape(f[4]), f[dash + 1], unescape(f[dash + 2]), dash + 3 < f.size() ? f[dash + 3] : ""});
  }
  return mounts;
}

bool cmkfs_mount_of(const MountEntry& m, unsigned uid) {
  if (m.type != "fuse.cmkfs" && m.type != "fuse.cmkfs-view") return false;
  std::string opts = "," + m.options + ",";
  size_t at = opts.find(",user_id=");
  if (at == std::string::npos) return false;
  unsigned long owner = std::strtoul(opts.c_str() + at + 9, nullptr, 10);
  return owner == 0 || owner == uid;
}

std::vector<MountEntry> current_mounts() {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream text;
  text << in.rdbuf();
  return parse_mountinfo(text.str());
}

std::string fuse_option_value(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

Status check_mount_target(const std::string& mountpoint) {
  if (::geteuid() != 0) return Status::Ok();  // fusermount3 checks a user's mountpoint itself
  CMKFS_RETURN_IF_ERROR(keyclient::check_host_dirs(mountpoint, "the mountpoint"));
  // In a sticky directory (/tmp) the mountpoint's owner may rename it and put a link in its place.
  struct stat dir, parent;
  std::string up = mountpoint.substr(0, mountpoint.find_last_of('/'));
  if (::lstat(mountpoint.c_str(), &dir) != 0 || ::stat(up.empty() ? "/" : up.c_str(), &parent) != 0) {
    return Status(ENOENT, "cannot check the mountpoint " + mountpoint);
  }
  if ((parent.st_mode & S_ISVTX) && dir.st_uid != 0) {
    return Status::AccessDenied("the mountpoint " + mountpoint + " belongs to another user in a sticky directory, who "
                                "could swap a link in its place: mount somewhere root owns");
  }
  return Status::Ok();
}

}  // namespace cmkfs::fs
