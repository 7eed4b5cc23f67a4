// The JSON documents cmkfs reads from the backing store and the host: the superblock, a wrapped
// key record, key settings and a host binding. Each is parsed and, when it parses, written back.
#include <cstdint>
#include <string_view>

#include "fs/store/store.h"
#include "meta/meta.h"

using namespace cmkfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto sb = meta::Superblock::from_json(text); sb.ok()) (void)sb->to_json();
  if (auto w = keyclient::WrappedKey::from_json(text); w.ok()) (void)w->to_json();
  if (auto k = keyclient::KekConfig::from_json(text); k.ok()) {
    (void)k->to_json();
    (void)k->admits("https://v.vault.azure.net/keys/k/0123");
    (void)k->rotation_enabled();
  }
  if (auto b = fs::HostBinding::from_json(text); b.ok()) (void)b->to_json();
  return 0;
}
