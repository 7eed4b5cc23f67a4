// fs/oci: what a registry stores, read from untrusted bytes: content digests, names, manifests and
// indexes (manifest.h), tar archives (tar.h), random access into gzip and zstd streams
// (gzip_index.h, zstd_index.h, with what a reader keeps between reads in decoder_cursor.h) and
// layers made readable at random (layer.h). Pure over bytes and
// read callbacks: no store, no FUSE; fuzzed (tests/fuzz/oci_fuzz.cc). Anything that does not
// parse is refused, never guessed.
#pragma once

#include "fs/oci/decoder_cursor.h"
#include "fs/oci/gzip_index.h"
#include "fs/oci/layer.h"
#include "fs/oci/manifest.h"
#include "fs/oci/tar.h"
#include "fs/oci/zstd_index.h"
