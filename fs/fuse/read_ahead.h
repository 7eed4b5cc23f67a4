// The kernel's readahead window for a FUSE mount. The INIT reply can only lower it below the
// 128 KiB default (the kernel keeps the smaller of the two), so the window is first raised through
// the mount's backing-device entry in sysfs (root only), then asked for in INIT. A window of a few
// MiB keeps several 1 MiB READs in flight, decrypted in parallel (docs/performance.md).
#pragma once

#include <cstdint>
#include <string>

#include "crypto/base/status.h"

namespace cmkfs::fs {

// Sets /sys/class/bdi/<device>/read_ahead_kb of the FUSE mount of `source` on `mountpoint` (the
// topmost, if stacked); `bytes` is rounded down to KiB.
Status set_read_ahead(const std::string& mountpoint, const std::string& source, uint64_t bytes);

}  // namespace cmkfs::fs
