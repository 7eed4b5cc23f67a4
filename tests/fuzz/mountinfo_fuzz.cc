// The kernel's mount table as cmkfs parses it (what another user's mount names could contain).
#include <cstdint>
#include <string>

#include "fs/fuse/mount_table.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)cmkfs::fs::parse_mountinfo(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
