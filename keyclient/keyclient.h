// keyclient: key-encryption-key (KEK) providers. A provider wraps and unwraps a store's data key
// (DEK); the KEK never leaves it. The local provider keeps the KEK in a file outside the store
// (the "service-managed key"); the vault provider asks a key vault (the customer-managed key).
//
// Errors are classified by code, so the key monitor can tell a revocation from an outage:
//   definitive (is_definitive_refusal): EACCES no access, EKEYREVOKED key disabled,
//                                       ENOKEY key or identity gone, EKEYREJECTED unwrap refused;
//   transient: anything else (EAGAIN network or 5xx, ETIMEDOUT, EBADMSG malformed reply).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "crypto/base/id128.h"
#include "crypto/crypto.h"
#include "crypto/base/status.h"

namespace cmkfs::keyclient {

bool is_definitive_refusal(const Status& s);

// The Azure instance metadata service's token endpoint: the default identity endpoint.
inline constexpr const char* kAzureImdsEndpoint = "http://169.254.169.254/metadata/identity/oauth2/token";

// Where a KEK lives. Stored by name ("local", "vault", "pkcs11", "kms2") in the superblock and
// wrapped keys. Every kind but the local one is a customer-managed key: versioned, revocable,
// monitored.
enum class ProviderKind { kLocal, kVault, kPkcs11, kKms2 };
const char* to_string(ProviderKind k);
std::optional<ProviderKind> provider_kind(std::string_view name);

// A DEK as a provider wrapped it. Stored in the store's "keys" table as JSON.
struct WrappedKey {
  ProviderKind provider = ProviderKind::kLocal;
  std::string key_id;  // what wrapped it: a versioned key id (vault, pkcs11: URI with id), or the local key's id
  std::string alg;     // "A256GCM" (local), "RSA-OAEP-256" (vault), "AES-KWP", "RSA-OAEP-256" or "RSA-OAEP" (pkcs11)
  std::vector<uint8_t> blob;
  std::map<std::string, std::vector<uint8_t>> annotations;  // kms2: what Encrypt returned, for Decrypt

  std::string to_json() const;
  static Result<WrappedKey> from_json(std::string_view json);  // EIO when malformed
};

// Where the KEK is; kept in the superblock as JSON so that `cmkfs mount` needs no key flags.
struct KekConfig {
  ProviderKind provider = ProviderKind::kLocal;
  std::string key_file;     // local: path of the key file
  std::string key_command;  // local: a program that prints the key instead (like gocryptfs's -extpass)
  // vault, pkcs11 and kms2:
  std::string key_identifier;            // as given: without a version (pkcs11: id) => automatic rotation;
                                         // kms2: the plugin's endpoint, always following its Status
  std::string versioned_key_identifier;  // the version that wraps the DEK now (kms2: the plugin's key_id)
  int64_t last_rotation = 0;             // unix seconds of the last rewrap, 0 if never
  // vault only: how its tokens are got (keyclient/credential.h)
  std::string credential = "managed-identity";
  std::string identity;                  // client id of the managed identity or app, or "[system]"
  std::string identity_endpoint;         // managed identity: the token URL; Entra credentials: the authority host
  std::string tenant_id;                 // Entra credentials
  std::string credential_file;           // secret, certificate PEM, federated token or App Service header file
  std::string vault_ca;                  // CA file for the vault's TLS certificate, if not public

  bool customer_managed() const { return provider != ProviderKind::kLocal; }
  bool rotation_enabled() const;  // a customer-managed key named without a version
  // How these settings differ from `other` in what reaches the key (provider, key file, key
  // identifier, identity, endpoints, CA; not the version in use or the rotation time): one line
  // per difference, empty when they name the same key the same way.
  std::string differences(const KekConfig& other) const;
  // Whether a DEK wrapped by `key_id` may be unwrapped under these settings: a version of the
  // configured key (the configured version, if it names one), or any local key id.
  bool admits(const std::string& key_id) const;
  std::string to_json() const;
  static Result<KekConfig> from_json(std::string_view json);
};

class KeyProvider {
 public:
  virtual ~KeyProvider() = default;
  virtual Result<WrappedKey> wrap(const crypto::SecretBytes& dek) = 0;
  virtual Result<crypto::SecretBytes> unwrap(const WrappedKey& wrapped) = 0;
  // The key id new wraps use: the vault key's latest version, or the local key's id.
  virtual Result<std::string> current_key_id() = 0;
  // Whether the KEK can be revoked from outside (a vault); the key monitor checks only these.
  virtual bool revocable() const = 0;
  // Checks, before a store is bound to it, that the KEK can serve: an RSA key that allows
  // wrapKey and unwrapKey, which this identity may use. A clear error otherwise.
  virtual Status validate() = 0;
};

// Proves that `provider` wraps and unwraps (a throwaway key there and back); `who` names it in
// the error ("the vault", "the token", "the KMS plugin").
Status prove_round_trip(KeyProvider& provider, const std::string& who);

// The local KEK file: created with mode 0600, refused when group or others can read it.
Status create_local_key_file(const std::string& path);  // EEXIST if it exists

// The socket of a KMS v2 plugin endpoint, kms2:///path/to/plugin.sock; EINVAL otherwise.
Result<std::string> kms2_socket_path(const std::string& endpoint);

// Builds the provider `config` describes, bound to one store (local wraps carry the store id).
// `timeout_seconds` bounds each request to a vault (and its identity endpoint).
Result<std::unique_ptr<KeyProvider>> make_provider(const KekConfig& config, const Id128& store_id,
                                                   double timeout_seconds = 10);

}  // namespace cmkfs::keyclient
