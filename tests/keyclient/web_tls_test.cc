// The HTTPS files a console makes for itself (keyclient/web/tls.h): the server's certificate
// verifies under the CA for the host's names, and the CA can vouch for nothing else, now or later.
#include "keyclient/web/tls.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

namespace cmkfs::web {
namespace {

X509* load(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return nullptr;
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  return x;
}

// Whether `cert` verifies under `ca` for `name` (a DNS name or, with `ip`, an address).
bool verifies(X509* ca, X509* cert, const std::string& name, bool ip) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, cert, nullptr);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
  if (ip) X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  else X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
  bool ok = X509_verify_cert(ctx) == 1;
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return ok;
}

TEST(WebTlsTest, TheCaSignsOnlyThisHostsNamesAndItsKeyIsNotKept) {
  std::string dir = ::testing::TempDir() + "/web-tls-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(ensure_tls_files(dir, "192.0.2.10", "cmkfs test CA").ok());
  EXPECT_FALSE(std::filesystem::exists(dir + "/ca.key"));  // nothing can sign with it again
  struct stat st;
  ASSERT_EQ(::stat((dir + "/server.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  X509* ca = load(dir + "/ca.pem");
  X509* server = load(dir + "/server.pem");
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(server, nullptr);
  int at = X509_get_ext_by_NID(ca, NID_name_constraints, -1);
  ASSERT_GE(at, 0) << "the CA is not constrained to this host's names";
  EXPECT_TRUE(X509_EXTENSION_get_critical(X509_get_ext(ca, at)));
  EXPECT_TRUE(verifies(ca, server, "localhost", false));
  EXPECT_TRUE(verifies(ca, server, "127.0.0.1", true));
  EXPECT_TRUE(verifies(ca, server, "::1", true));
  EXPECT_TRUE(verifies(ca, server, "192.0.2.10", true));
  EXPECT_FALSE(verifies(ca, server, "example.com", false));
  X509_free(ca);
  X509_free(server);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cmkfs::web
