#include <nlohmann/json.hpp>

#include "crypto/base/hex.h"
#include "crypto/base/json_integer.h"
#include "keyclient/keyclient.h"
#include "keyclient/pkcs11_uri.h"
#include "keyclient/vault_client.h"

namespace cmkfs::keyclient {

using nlohmann::json;

bool is_definitive_refusal(const Status& s) {
  return s.code() == EACCES || s.code() == EKEYREVOKED || s.code() == ENOKEY || s.code() == EKEYREJECTED;
}

const char* to_string(ProviderKind k) {
  switch (k) {
    case ProviderKind::kLocal: return "local";
    case ProviderKind::kVault: return "vault";
    case ProviderKind::kPkcs11: return "pkcs11";
    case ProviderKind::kKms2: return "kms2";
  }
  return "unknown";
}

std::optional<ProviderKind> provider_kind(std::string_view name) {
  for (auto k : {ProviderKind::kLocal, ProviderKind::kVault, ProviderKind::kPkcs11, ProviderKind::kKms2}) {
    if (name == to_string(k)) return k;
  }
  return std::nullopt;
}

std::string WrappedKey::to_json() const {
  json j{{"provider", to_string(provider)}, {"key_id", key_id}, {"alg", alg}, {"blob", to_hex(blob)}};
  for (const auto& [k, v] : annotations) j["annotations"][k] = to_hex(v);
  return j.dump();
}

Result<WrappedKey> WrappedKey::from_json(std::string_view text) {
  try {
    json j = json::parse(text);
    auto kind = provider_kind(j.at("provider").get<std::string>());
    if (!kind) return Status::Corruption("wrapped data key: unknown key provider");
    WrappedKey w{*kind, j.at("key_id"), j.at("alg"), {}, {}};
    auto blob = from_hex(j.at("blob").get<std::string>());
    if (!blob) return Status::Corruption("wrapped data key: bad blob");
    w.blob = std::move(*blob);
    if (j.contains("annotations")) {
      for (const auto& [k, v] : j.at("annotations").items()) {
        auto bytes = from_hex(v.get<std::string>());
        if (!bytes) return Status::Corruption("wrapped data key: bad annotation");
        w.annotations[k] = std::move(*bytes);
      }
    }
    return w;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("wrapped data key record is damaged: ") + e.what());
  }
}

Status prove_round_trip(KeyProvider& provider, const std::string& who) {
  auto probe = crypto::random_key();
  if (!probe.ok()) return probe.status();
  auto w = provider.wrap(*probe);
  if (!w.ok()) return w.status();
  auto back = provider.unwrap(*w);
  if (!back.ok()) return back.status();
  if (!crypto::equal_constant_time(back->bytes(), probe->bytes())) {
    return Status(EKEYREJECTED, who + "'s unwrap does not give back what it wrapped");
  }
  return Status::Ok();
}

bool KekConfig::rotation_enabled() const {
  if (provider == ProviderKind::kKms2) return true;  // the plugin's Status names the key to use
  if (provider == ProviderKind::kPkcs11) {
    auto uri = Pkcs11Uri::parse(key_identifier);
    return uri.ok() && !uri->id;
  }
  // https://vault/keys/NAME has three path segments after the host's root; a version adds one.
  if (provider != ProviderKind::kVault) return false;
  auto pos = key_identifier.find("/keys/");
  if (pos == std::string::npos) return false;
  std::string rest = key_identifier.substr(pos + 6);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  return rest.find('/') == std::string::npos;
}

std::string KekConfig::differences(const KekConfig& o) const {
  std::string out;
  auto differ = [&](const char* what, const std::string& mine, const std::string& theirs) {
    if (mine != theirs) out += std::string(what) + " '" + mine + "' instead of '" + theirs + "'\n";
  };
  differ("provider", to_string(provider), to_string(o.provider));
  if (provider != o.provider) return out;
  if (provider == ProviderKind::kLocal) {
    differ("key file", key_file, o.key_file);
    differ("key command", key_command, o.key_command);
  } else if (provider == ProviderKind::kPkcs11 || provider == ProviderKind::kKms2) {
    differ("key identifier", key_identifier, o.key_identifier);
  } else {
    differ("key identifier", key_identifier, o.key_identifier);
    differ("credential", credential, o.credential);
    differ("identity", identity, o.identity);
    differ("identity endpoint", identity_endpoint, o.identity_endpoint);
    differ("tenant", tenant_id, o.tenant_id);
    differ("credential file", credential_file, o.credential_file);
    differ("vault CA", vault_ca, o.vault_ca);
  }
  return out;
}

bool KekConfig::admits(const std::string& key_id) const {
  if (provider == ProviderKind::kLocal) return key_id.rfind("local:", 0) == 0;
  if (provider == ProviderKind::kKms2) return !key_id.empty() && key_id.size() <= 1024;  // the plugin judges
  if (provider == ProviderKind::kPkcs11) {
    auto want = Pkcs11Uri::parse(key_identifier);
    auto got = Pkcs11Uri::parse(key_id);
    if (!want.ok() || !got.ok() || !got->id) return false;
    return want->same_key(*got) && (!want->id || want->id == got->id);
  }
  auto want = KeyId::parse(key_identifier);
  auto got = KeyId::parse(key_id);
  if (!want || !got || got->version.empty()) return false;
  return want->same_key(*got) && (want->version.empty() || want->version == got->version);
}

std::string KekConfig::to_json() const {
  json j{{"provider", to_string(provider)}};
  if (provider == ProviderKind::kLocal) {
    j["key_file"] = key_file;
    if (!key_command.empty()) j["key_command"] = key_command;
  } else if (provider == ProviderKind::kPkcs11 || provider == ProviderKind::kKms2) {
    j["key_identifier"] = key_identifier;
    j["versioned_key_identifier"] = versioned_key_identifier;
    j["last_rotation"] = last_rotation;
  } else {
    j["key_identifier"] = key_identifier;
    j["versioned_key_identifier"] = versioned_key_identifier;
    j["identity"] = identity;
    j["identity_endpoint"] = identity_endpoint;
    if (credential != "managed-identity") {
      j["credential"] = credential;
      j["tenant_id"] = tenant_id;
      j["credential_file"] = credential_file;
    }
    j["vault_ca"] = vault_ca;
    j["last_rotation"] = last_rotation;
  }
  return j.dump();
}

Result<KekConfig> KekConfig::from_json(std::string_view text) {
  try {
    json j = json::parse(text);
    KekConfig c;
    std::string name = j.at("provider");
    auto kind = provider_kind(name);
    if (!kind) return Status::Corruption("unknown key provider '" + name + "'");
    c.provider = *kind;
    if (c.provider == ProviderKind::kLocal) {
      c.key_file = j.at("key_file");
      c.key_command = j.value("key_command", "");
    } else if (c.provider == ProviderKind::kPkcs11 || c.provider == ProviderKind::kKms2) {
      c.key_identifier = j.at("key_identifier");
      c.versioned_key_identifier = j.at("versioned_key_identifier");
      c.last_rotation = json_integer_or(j, "last_rotation", int64_t{0});
    } else {
      c.key_identifier = j.at("key_identifier");
      c.versioned_key_identifier = j.at("versioned_key_identifier");
      c.identity = j.at("identity");
      c.identity_endpoint = j.at("identity_endpoint");
      c.credential = j.value("credential", "managed-identity");
      c.tenant_id = j.value("tenant_id", "");
      c.credential_file = j.value("credential_file", "");
      c.vault_ca = j.value("vault_ca", "");
      c.last_rotation = json_integer_or(j, "last_rotation", int64_t{0});
    }
    return c;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("key settings in the superblock are damaged: ") + e.what());
  }
}

}  // namespace cmkfs::keyclient
