#include "fs/fuse/read_ahead.h"

#include <cerrno>
#include <fstream>

#include "fs/fuse/mount_table.h"

namespace cmkfs::fs {

Status set_read_ahead(const std::string& mountpoint, const std::string& source, uint64_t bytes) {
  std::string device;
  for (const auto& m : current_mounts()) {
    if (m.target == mountpoint && m.source == source && m.type.rfind("fuse", 0) == 0) device = m.device;
  }
  if (device.empty()) return Status::NotFound("no FUSE mount of " + source + " on " + mountpoint);
  std::string path = "/sys/class/bdi/" + device + "/read_ahead_kb";
  std::ofstream out(path);
  out << bytes / 1024 << "\n";
  out.flush();
  if (!out) return Status::IOError(errno, "cannot set the read-ahead window in " + path);
  return Status::Ok();
}

}  // namespace cmkfs::fs
