// The S3 backend of ObjectStore (object_store.h), for Ceph RGW or any S3 service: each file's
// object is striped over S3 objects <prefix>/<file id hex>[.<k>] in the store's bucket, each
// written whole by one PUT. Internal to fs/store.
#pragma once

#include <memory>

#include "fs/store/object_store.h"
#include "keyclient/http.h"

namespace cmkfs::fs {

// Reaches config.endpoint (path-style requests, SigV4 in config.region) with the keys in the
// file config.credentials (the caller's own, unreadable by others). Requests time out after
// 20 s; a 5xx or a dropped connection is retried twice. `transport`: tests give a scripted one.
Result<std::unique_ptr<ObjectStore>> open_s3_object_store(const ObjectsConfig& config,
                                                          std::unique_ptr<keyclient::HttpTransport> transport = nullptr);

// Creates config.pool (the bucket) if it does not exist yet, in config.region (named in the
// request outside us-east-1, as AWS requires); a bucket this user already owns is fine.
Status create_s3_bucket(const ObjectsConfig& config, std::unique_ptr<keyclient::HttpTransport> transport = nullptr);

// http(s)://HOST[:PORT] and nothing more; http only to a loopback address (the requests are
// signed, never encrypted: the store's objects are sealed, their names and the requests are not).
Status check_s3_endpoint(const std::string& endpoint);

}  // namespace cmkfs::fs
