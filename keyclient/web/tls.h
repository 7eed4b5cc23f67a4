// A private CA and a server certificate for an HTTPS listener on this host, made with OpenSSL on
// first start: DIR/ca.pem (give it to clients), DIR/ca.key, DIR/server.pem, DIR/server.key (keys
// mode 0600). The certificate names localhost, 127.0.0.1, ::1 and `host`.
#pragma once

#include <string>

#include "crypto/base/status.h"

namespace cmkfs::web {

Status ensure_tls_files(const std::string& dir, const std::string& host, const std::string& ca_name);

}  // namespace cmkfs::web
