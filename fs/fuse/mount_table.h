// The kernel's table of mounts, read from /proc/self/mountinfo. stat(2) of a FUSE mountpoint
// would ask the daemon itself, so the daemon and the commands look here instead.
#pragma once

#include <string>
#include <vector>

namespace cmkfs::fs {

struct MountEntry {
  std::string device;  // "MAJOR:MINOR", also the name of the mount's /sys/class/bdi entry
  std::string target;  // the mountpoint
  std::string type;    // "fuse.cmkfs", "tmpfs", ...
  std::string source;  // "cmkfs:/path/to/store" for ours
};

// Parses mountinfo text (proc(5)); octal escapes such as \040 are decoded. Malformed lines are
// skipped.
std::vector<MountEntry> parse_mountinfo(const std::string& text);

// The calling process's mounts, in mount order (a later entry is on top of an earlier one).
std::vector<MountEntry> current_mounts();

}  // namespace cmkfs::fs
