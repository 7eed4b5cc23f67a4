// The kernel's table of mounts, read from /proc/self/mountinfo. stat(2) of a FUSE mountpoint
// would ask the daemon itself, so the daemon and the commands look here instead.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "crypto/base/status.h"

namespace cmkfs::fs {

struct MountEntry {
  std::string device;  // "MAJOR:MINOR", also the name of the mount's /sys/class/bdi entry
  std::string target;  // the mountpoint
  std::string type;    // "fuse.cmkfs", "tmpfs", ...
  std::string source;  // "cmkfs:/path/to/store" for ours
  std::string options;  // the superblock's options: "rw,user_id=0,group_id=0,..." for FUSE
};

// A mount that a cmkfs daemon of this user (or root) made: type fuse.cmkfs, and user_id, which
// the kernel sets to the mounting user (fusermount3 lets any user pick the name and subtype, not
// the user_id), is 0 or `uid`. The source names the store; it is only trusted from such a mount.
bool cmkfs_mount_of(const MountEntry& m, unsigned uid);

// Parses mountinfo text (proc(5)); octal escapes such as \040 are decoded. Malformed lines are
// skipped.
std::vector<MountEntry> parse_mountinfo(const std::string& text);

// The calling process's mounts, in mount order (a later entry is on top of an earlier one).
std::vector<MountEntry> current_mounts();

// `value` for a libfuse -o list (fsname=VALUE): its commas and backslashes escaped, so that a
// path holding ",allow_other" names a source instead of adding a mount option.
std::string fuse_option_value(std::string_view value);

// For a mount made as root on `mountpoint` (canonical): every directory above it, and every link
// on the way, the host's (keyclient/host_path.h). Another user who could rename one of them could
// swap a link in after the checks and have the mount land elsewhere (on /etc).
Status check_mount_target(const std::string& mountpoint);

}  // namespace cmkfs::fs
