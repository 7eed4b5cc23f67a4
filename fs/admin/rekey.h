// Internal to fs/admin: a data-key rotation done at once on a store opened exclusively (a new
// generation, unless one is under way; every file and record moved; old keys forgotten; the
// metadata compacted). Used by `encryption rotate-data-key` and `encryption enable`.
#pragma once

#include <iosfwd>

#include "fs/store/store.h"

namespace cmkfs::fs {

Status rotate_data_key_offline(OpenStore& store, std::ostream& out);

}  // namespace cmkfs::fs
