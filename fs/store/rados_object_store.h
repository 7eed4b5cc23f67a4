// The RADOS backend of ObjectStore (object_store.h): each file's object is striped over RADOS
// objects named by the file id in hex, in the store's pool and namespace. Internal to fs/store.
#pragma once

#include <memory>

#include "fs/store/object_store.h"

namespace cmkfs::fs {

// Connects as client.<config.user> ("admin" if empty) with the cluster config file config.conf
// (the monitors and the keyring it names), and opens config.pool and config.ns. Fails, rather
// than hangs, when the cluster does not answer within 20 s.
Result<std::unique_ptr<ObjectStore>> open_rados_object_store(const ObjectsConfig& config);

}  // namespace cmkfs::fs
