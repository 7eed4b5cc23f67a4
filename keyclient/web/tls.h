// A private CA and a server certificate for an HTTPS listener on this host, made with OpenSSL on
// first start: DIR/ca.pem (give it to clients), DIR/server.pem, DIR/server.key (mode 0600). The
// certificate names localhost, 127.0.0.1, ::1 and `host`. The CA signs that one certificate and
// its key is thrown away; its name constraints allow only those names, so a browser that trusts
// ca.pem trusts it for nothing else, whatever becomes of this host.
#pragma once

#include <string>

#include "crypto/base/status.h"

namespace cmkfs::web {

Status ensure_tls_files(const std::string& dir, const std::string& host, const std::string& ca_name);

}  // namespace cmkfs::web
