// cmkfs-vault's operations on request bodies anyone can send: key creation, wrap and unwrap,
// updates, with the body as JSON (when it parses) and the key name from the input.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "keyclient/devvault/vault.h"

using namespace cmkfs;
using namespace cmkfs::devvault;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<Vault> vault = [] {
    std::string dir = "/tmp/cmkfs-fuzz-vault-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir);
    auto v = Vault::open(dir, true);
    (void)(*v)->create_key("k", json{{"kty", "RSA"}, {"key_size", 2048}});
    return std::move(*v);
  }();
  std::string text(reinterpret_cast<const char*>(data), size);
  auto nl = text.find('\n');
  std::string name = nl == std::string::npos ? "k" : text.substr(0, nl);
  json body = json::parse(nl == std::string::npos ? text : text.substr(nl + 1), nullptr, false);
  if (body.is_discarded()) body = json::object();
  try {
    (void)vault->wrap(name, "", body, false);
    (void)vault->wrap(name, "", body, true);
    (void)vault->get_key(name, "");
    if (name != "k") (void)vault->update_key(name, "", body);
  } catch (const json::exception&) {
    // The server turns these into 400s (handle() in server.cc): not a crash.
  }
  return 0;
}
