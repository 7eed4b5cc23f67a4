// fs/fuse: the kernel side of a mount. The libfuse low-level operation table over a Filesystem
// (fuse_bridge.h), FUSE over io_uring beside /dev/fuse (fuse_uring.h), an orderly stop on signals
// (shutdown.h), invalidations of the kernel's caches that a stop cannot hang on
// (cache_invalidator.h) and the kernel's mount table (mount_table.h). Nothing here knows keys or LMDB.
#pragma once

#include "fs/fuse/cache_invalidator.h"
#include "fs/fuse/fuse_bridge.h"
#include "fs/fuse/fuse_uring.h"
#include "fs/fuse/mount_table.h"
#include "fs/fuse/shutdown.h"
#include "fs/fuse/view_session.h"
