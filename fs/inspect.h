// cmkfs inspect: what an unmounted store holds, read with its key, as JSON. For a distribution
// registry's layout (docker/registry/v2 under the registry's root directory): each repository
// with its tags and the manifest digest each points at, and the blobs' count and size. For every
// OCI image layout in the store (a directory with an oci-layout file): its manifests and refs.
// And which key protects all of it: the data-key generation and the key-encryption key wrapping it.
#pragma once

#include <iosfwd>
#include <string>

namespace cmkfs::fs {

// registry_root: the registry's rootdirectory relative to the store's root ("/" when the
// registry's filesystem driver pointed at the mountpoint). Returns the exit code.
int run_inspect(const std::string& store, const std::string& registry_root, std::ostream& out, std::ostream& err);

}  // namespace cmkfs::fs
