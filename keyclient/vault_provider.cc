// The customer-managed key: the DEK is wrapped with RSA-OAEP-256 by a key in a key vault.
#include <algorithm>

#include "keyclient/host_path.h"
#include "keyclient/keyclient.h"
#include "keyclient/vault_client.h"

namespace cmkfs::keyclient {
namespace {

constexpr const char* kAlg = "RSA-OAEP-256";

class VaultProvider : public KeyProvider {
 public:
  VaultProvider(KeyId configured, std::unique_ptr<VaultClient> client)
      : configured_(std::move(configured)), client_(std::move(client)) {}

  Result<WrappedKey> wrap(const crypto::SecretBytes& dek) override {
    // Always wrap under an explicit version, so unwrap can name the same one.
    auto kid = current_key_id();
    if (!kid.ok()) return kid.status();
    auto id = KeyId::parse(*kid);
    if (!id) return Status(EBADMSG, "key vault returned a malformed key id: " + *kid);
    auto w = client_->wrap(*id, dek.bytes());
    if (!w.ok()) return w.status();
    auto wrapped_by = KeyId::parse(w->kid);
    if (!wrapped_by || !wrapped_by->same_key(configured_) || wrapped_by->version.empty()) {
      return Status(EBADMSG, "key vault wrapped with a key other than the one configured: " + w->kid);
    }
    return WrappedKey{ProviderKind::kVault, w->kid, kAlg, std::move(w->value), {}};
  }

  Result<crypto::SecretBytes> unwrap(const WrappedKey& w) override {
    if (w.provider != ProviderKind::kVault || w.alg != kAlg) return Status::InvalidArgument("the data key was not wrapped by a vault key");
    auto id = KeyId::parse(w.key_id);
    if (!id || id->version.empty()) return Status::Corruption("wrapped data key names no key version: " + w.key_id);
    auto dek = client_->unwrap(*id, w.blob);
    if (dek.ok() && dek->size() != crypto::kKeySize) return Status(EKEYREJECTED, "the vault unwrapped a key of the wrong size");
    return dek;
  }

  Result<std::string> current_key_id() override {
    if (!configured_.version.empty()) return configured_.str();  // manual rotation: pinned
    auto bundle = client_->get_key(configured_);
    if (!bundle.ok()) return bundle.status();
    const auto& kid = (*bundle)["key"]["kid"];
    auto latest = kid.is_string() ? KeyId::parse(kid.get<std::string>()) : std::nullopt;
    if (!latest || !latest->same_key(configured_) || latest->version.empty()) {
      return Status(EBADMSG, "key vault named a latest version of another key");
    }
    return latest->str();
  }

  bool revocable() const override { return true; }

  Status validate() override {
    auto bundle = client_->get_key(configured_);
    if (!bundle.ok()) return bundle.status();
    const auto& key = (*bundle)["key"];
    std::string kty = key.value("kty", "");
    if (kty != "RSA" && kty != "RSA-HSM") {
      return Status(EKEYREJECTED, "key " + configured_.str() + " is an " + kty +
                                     " key; cmkfs supports only RSA and RSA-HSM keys");
    }
    auto ops = key.value("key_ops", std::vector<std::string>{});
    for (const char* op : {"wrapKey", "unwrapKey"}) {
      if (std::find(ops.begin(), ops.end(), op) == ops.end()) {
        return Status(EKEYREJECTED, "key " + configured_.str() + " does not allow " + op);
      }
    }
    if ((*bundle).contains("attributes") && !(*bundle)["attributes"].value("enabled", true)) {
      return Status(EKEYREVOKED, "key " + configured_.str() + " is disabled");
    }
    return prove_round_trip(*this, "the vault");  // both permissions, with a throwaway key
  }

 private:
  KeyId configured_;
  std::unique_ptr<VaultClient> client_;
};

}  // namespace

Result<std::unique_ptr<KeyProvider>> make_vault_provider(const KekConfig& config, double timeout_seconds) {
  auto id = KeyId::parse(config.key_identifier);
  if (!id && config.key_identifier.rfind("http://", 0) == 0) {
    return Status::InvalidArgument("'" + config.key_identifier + "': a key vault is reached over https only");
  }
  if (!id) {
    return Status::InvalidArgument("'" + config.key_identifier + "' is not a key identifier (https://VAULT/keys/NAME[/VERSION])");
  }
  auto kind = credential_kind(config.credential);
  if (!kind) return Status::InvalidArgument("unknown credential '" + config.credential + "'");
  if (config.identity.empty()) return Status::InvalidArgument("a vault key needs --identity CLIENT_ID or [system]");
  Credential credential{*kind, config.identity, config.identity_endpoint, config.tenant_id, config.credential_file};
  CMKFS_RETURN_IF_ERROR(credential.check());
  // A CA someone else could replace would let them be the vault.
  if (!config.vault_ca.empty()) CMKFS_RETURN_IF_ERROR(check_host_file(config.vault_ca, "the vault CA file"));
  auto client = std::make_unique<VaultClient>(make_curl_transport({.ca_file = config.vault_ca, .timeout_seconds = timeout_seconds}),
                                              VaultClientOptions{credential});
  return std::unique_ptr<KeyProvider>(new VaultProvider(std::move(*id), std::move(client)));
}

}  // namespace cmkfs::keyclient
