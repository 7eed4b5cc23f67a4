// A PKCS#11 key named by an RFC 7512 URI:
//   pkcs11:token=T;object=LABEL[;id=%01]?module-path=/usr/lib/...so&pin-source=file:/etc/cmkfs/hsm.pin
//
// Only what cmkfs acts on is accepted: the token's label, manufacturer, serial and model, the
// key's label (object) and CKA_ID (id), and type (secret or private); module-path (absolute:
// the one module the host pins) and pin-source (a file). A PIN in the URI (pin-value) is refused:
// the URI is kept in the store's settings and in logs. Any other attribute is refused too, rather
// than silently matching more than the user meant.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/base/status.h"

namespace cmkfs::keyclient {

struct Pkcs11Uri {
  std::string token, manufacturer, serial, model;  // token attributes; empty: any
  std::string object;                              // the key's CKA_LABEL (required)
  std::string type;                                // "", "secret" or "private"
  std::optional<std::vector<uint8_t>> id;          // CKA_ID: a pinned version; none: the highest
  std::string module_path;                         // absolute
  std::string pin_source;                          // absolute path of the PIN file

  static Result<Pkcs11Uri> parse(std::string_view uri);  // EINVAL with the reason
  static bool looks_like(std::string_view s) { return s.rfind("pkcs11:", 0) == 0; }
  // The canonical form: attributes in a fixed order, percent-encoded; id as %NN for every byte.
  std::string str() const;
  Pkcs11Uri with_id(std::vector<uint8_t> id) const;
  // Whether `o` names the same key objects (same module, token and label) ignoring id.
  bool same_key(const Pkcs11Uri& o) const;
};

}  // namespace cmkfs::keyclient
