// Internal to fs/console: the pages and forms, on the frame console.cc set up.
#pragma once

#include <string>
#include <vector>

#include "fs/console/console.h"
#include "keyclient/web/console.h"

namespace cmkfs::fs {

// The stores the console knows, found afresh for each request: mounted ones, the options', and
// those of /etc/cmkfs/mounts/*.conf. Only these are ever acted on.
struct KnownStore {
  std::string store, mountpoint;  // mountpoint "" when not mounted
};
std::vector<KnownStore> known_stores(const ConsoleOptions& o);

void add_console_pages(web::Console& console, const ConsoleOptions& o);

}  // namespace cmkfs::fs
