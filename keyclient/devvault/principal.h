// Who a request to the development vault comes from: an identity, an app, or the admin.
#pragma once

#include <string>

namespace cmkfs::devvault {

struct Principal {
  std::string name;
  std::string client_id;
  std::string principal_id;  // the object id policies name
};

}  // namespace cmkfs::devvault
