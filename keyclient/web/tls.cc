#include "keyclient/web/tls.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <memory>

#include "crypto/asymmetric.h"

namespace cmkfs::web {
namespace {

const std::string kAllOnes6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

bool add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// `san` is the server's names (subjectAltName); for the CA, what it may name (nameConstraints).
Result<X509Ptr> make_cert(const crypto::KeyPair& key, const std::string& cn, X509* issuer, const crypto::KeyPair& signer,
                          bool ca, const std::string& san) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  std::vector<uint8_t> serial(16);
  (void)crypto::random_bytes(serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 86400);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509* iss = issuer != nullptr ? issuer : cert.get();
  bool ok = ca ? add_ext(cert.get(), iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
                     add_ext(cert.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign") &&
                     add_ext(cert.get(), iss, NID_subject_key_identifier, "hash") &&
                     add_ext(cert.get(), iss, NID_name_constraints, "critical," + san)
               : add_ext(cert.get(), iss, NID_basic_constraints, "critical,CA:FALSE") &&
                     add_ext(cert.get(), iss, NID_key_usage, "critical,digitalSignature,keyEncipherment") &&
                     add_ext(cert.get(), iss, NID_ext_key_usage, "serverAuth") &&
                     add_ext(cert.get(), iss, NID_subject_alt_name, san);
  if (!ok || X509_sign(cert.get(), signer.get(), EVP_sha256()) == 0) return Status::IOError(EIO, "certificate signing failed");
  return cert;
}

Status write_pem(const std::string& path, const std::function<int(FILE*)>& write, mode_t mode) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return Status::IOError(errno, "cannot write " + path);
  ::fchmod(fileno(f), mode);
  bool ok = write(f) == 1;
  ok = std::fclose(f) == 0 && ok;
  return ok ? Status::Ok() : Status::IOError(EIO, "cannot write " + path);
}

}  // namespace

Status ensure_tls_files(const std::string& dir, const std::string& host, const std::string& ca_name) {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  stdfs::remove(dir + "/ca.key", ec);  // an older version kept it; nothing signs with it
  if (stdfs::exists(dir + "/ca.pem") && stdfs::exists(dir + "/server.pem") && stdfs::exists(dir + "/server.key")) {
    return Status::Ok();
  }
  auto ca_key = crypto::KeyPair::generate_ec("P-256");
  auto srv_key = crypto::KeyPair::generate_ec("P-256");
  if (!ca_key.ok() || !srv_key.ok()) return Status::IOError(EIO, "key generation failed");
  std::string san = "DNS:localhost,IP:127.0.0.1,IP:::1";
  std::string permitted = "permitted;DNS:localhost,permitted;IP:127.0.0.1/255.255.255.255,permitted;IP:::1/" + kAllOnes6;
  if (host != "127.0.0.1" && host != "localhost" && host != "::1" && !host.empty() && host != "0.0.0.0") {
    in_addr a4;
    in6_addr a6;
    bool v6 = ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
    bool ip = v6 || ::inet_pton(AF_INET, host.c_str(), &a4) == 1;
    san += std::string(ip ? ",IP:" : ",DNS:") + host;
    permitted += ",permitted;" + std::string(ip ? "IP:" : "DNS:") + host +
                 (!ip ? "" : v6 ? "/" + kAllOnes6 : "/255.255.255.255");
  }
  auto ca = make_cert(*ca_key, ca_name, nullptr, *ca_key, true, permitted);
  if (!ca.ok()) return ca.status();
  auto srv = make_cert(*srv_key, "localhost", ca->get(), *ca_key, false, san);
  if (!srv.ok()) return srv.status();
  CMKFS_RETURN_IF_ERROR(write_pem(dir + "/ca.pem", [&](FILE* f) { return PEM_write_X509(f, ca->get()); }, 0644));
  CMKFS_RETURN_IF_ERROR(write_pem(dir + "/server.pem", [&](FILE* f) { return PEM_write_X509(f, srv->get()); }, 0644));
  return write_pem(dir + "/server.key", [&](FILE* f) {
    return PEM_write_PrivateKey(f, srv_key->get(), nullptr, nullptr, 0, nullptr, nullptr);
  }, 0600);
}

}  // namespace cmkfs::web
