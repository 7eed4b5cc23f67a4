#include "keyclient/devvault/apps.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"
#include "keyclient/base64url.h"
#include "keyclient/devvault/vault.h"

namespace cmkfs::devvault {
namespace {

using nlohmann::json;

constexpr int64_t kClockSkew = 300;
constexpr int64_t kMaxAssertionLife = 3600;

// A string claim or header field; "" when absent or of another type (never throws).
std::string str(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

json field_or_null(const json& j, const char* key) { return j.is_object() && j.contains(key) ? j[key] : json(); }

struct Jwt {
  json header, claims;
  std::string signing_input;
  std::vector<uint8_t> signature;
};

std::optional<Jwt> parse_jwt(const std::string& text) {
  if (text.size() > 16384) return std::nullopt;
  size_t a = text.find('.'), b = a == std::string::npos ? a : text.find('.', a + 1);
  if (b == std::string::npos || text.find('.', b + 1) != std::string::npos) return std::nullopt;
  auto h = keyclient::base64url_decode(text.substr(0, a));
  auto c = keyclient::base64url_decode(text.substr(a + 1, b - a - 1));
  auto s = keyclient::base64url_decode(text.substr(b + 1));
  if (!h || !c || !s) return std::nullopt;
  Jwt j{json::parse(std::string(h->begin(), h->end()), nullptr, false),
        json::parse(std::string(c->begin(), c->end()), nullptr, false), text.substr(0, b), std::move(*s)};
  if (!j.header.is_object() || !j.claims.is_object() || str(j.header, "alg") != "RS256") return std::nullopt;
  return j;
}

// The public key of a PEM certificate or public key.
EVP_PKEY* public_key(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = bio ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  if (cert != nullptr) {
    EVP_PKEY* k = X509_get_pubkey(cert);
    X509_free(cert);
    return k;
  }
  bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* k = bio ? PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  return k;
}

bool verify_rs256(const Jwt& jwt, const std::string& pem) {
  EVP_PKEY* key = public_key(pem);
  if (key == nullptr) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx, jwt.signature.data(), jwt.signature.size(),
                             reinterpret_cast<const uint8_t*>(jwt.signing_input.data()), jwt.signing_input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  return ok;
}

// base64url(SHA-1 or SHA-256 of the certificate's DER): its x5t and x5t#S256.
std::pair<std::string, std::string> thumbprints(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = bio ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  if (cert == nullptr) return {};
  unsigned char d1[EVP_MAX_MD_SIZE], d2[EVP_MAX_MD_SIZE];
  unsigned int n1 = 0, n2 = 0;
  X509_digest(cert, EVP_sha1(), d1, &n1);
  X509_digest(cert, EVP_sha256(), d2, &n2);
  X509_free(cert);
  return {keyclient::base64url_encode(std::span<const uint8_t>(d1, n1)),
          keyclient::base64url_encode(std::span<const uint8_t>(d2, n2))};
}

bool audience_has(const json& aud, const std::string& want) {
  if (aud.is_string()) return aud.get<std::string>() == want;
  if (!aud.is_array()) return false;
  for (const auto& a : aud) {
    if (a.is_string() && a.get<std::string>() == want) return true;
  }
  return false;
}

// exp in the future (and not too far), nbf not in the future.
bool fresh(const json& claims, int64_t max_life) {
  int64_t now = unix_now();
  if (!claims.contains("exp") || !claims["exp"].is_number_integer()) return false;
  int64_t exp = claims["exp"];
  int64_t nbf = claims.contains("nbf") && claims["nbf"].is_number_integer() ? claims["nbf"].get<int64_t>() : now;
  return exp > now - kClockSkew && nbf <= now + kClockSkew && (max_life == 0 || exp - now <= max_life + kClockSkew);
}

ClientAuth refused(int status, std::string error, std::string description) {
  return ClientAuth{std::nullopt, status, std::move(error), std::move(description)};
}

}  // namespace

std::string secret_hash(const std::string& secret) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), d);
  return to_hex(std::span<const uint8_t>(d, sizeof d));
}

Principal AppRegistry::create(const std::string& name) {
  for (const auto& a : apps_) {
    if (a.principal.name == name) return a.principal;
  }
  apps_.push_back(App{Principal{name, random_guid(), random_guid()}, {}, {}, {}});
  return apps_.back().principal;
}

App* AppRegistry::find(const std::string& client_id) {
  for (auto& a : apps_) {
    if (a.principal.client_id == client_id) return &a;
  }
  return nullptr;
}

const App* AppRegistry::find(const std::string& client_id) const { return const_cast<AppRegistry*>(this)->find(client_id); }

std::vector<Principal> AppRegistry::list() const {
  std::vector<Principal> out;
  for (const auto& a : apps_) out.push_back(a.principal);
  return out;
}

json AppRegistry::to_json() const {
  json out = json::array();
  for (const auto& a : apps_) {
    json fed = json::array();
    for (const auto& f : a.federated) {
      fed.push_back({{"issuer", f.issuer}, {"subject", f.subject}, {"audience", f.audience}, {"issuerKey", f.issuer_key_pem}});
    }
    out.push_back({{"name", a.principal.name}, {"clientId", a.principal.client_id},
                   {"principalId", a.principal.principal_id}, {"secretHashes", a.secret_hashes},
                   {"certificates", a.certificates}, {"federated", fed}});
  }
  return out;
}

Status AppRegistry::load(const json& j) {
  try {
    for (const auto& a : j) {
      App app{Principal{a.at("name"), a.at("clientId"), a.at("principalId")}, a.at("secretHashes"), a.at("certificates"), {}};
      for (const auto& f : a.at("federated")) {
        app.federated.push_back({f.at("issuer"), f.at("subject"), f.at("audience"), f.at("issuerKey")});
      }
      apps_.push_back(std::move(app));
    }
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("the vault's app registrations are damaged: ") + e.what());
  }
  return Status::Ok();
}

ClientAuth authenticate_client(const AppRegistry& apps, const std::map<std::string, std::string>& form,
                               const std::string& token_url, const std::string& resource) {
  auto field = [&](const char* k) {
    auto it = form.find(k);
    return it == form.end() ? std::string() : it->second;
  };
  if (field("grant_type") != "client_credentials") {
    return refused(400, "unsupported_grant_type", "AADSTS70003: only client_credentials is served here");
  }
  std::string client_id = field("client_id");
  const App* app = apps.find(client_id);
  if (app == nullptr) {
    return refused(400, "unauthorized_client", "AADSTS700016: Application with identifier '" + client_id + "' was not found");
  }
  if (field("scope") != resource + "/.default") {
    return refused(400, "invalid_scope", "AADSTS70011: the scope must be " + resource + "/.default");
  }
  if (std::string secret = field("client_secret"); !secret.empty()) {
    std::string h = secret_hash(secret);
    for (const auto& known : app->secret_hashes) {
      if (crypto::equal_constant_time(crypto::as_bytes(h), crypto::as_bytes(known))) {
        return ClientAuth{app->principal, 200, "", ""};
      }
    }
    return refused(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.");
  }
  if (field("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
    return refused(400, "invalid_request", "AADSTS900144: client_secret or client_assertion is required");
  }
  auto jwt = parse_jwt(field("client_assertion"));
  if (!jwt) return refused(401, "invalid_client", "AADSTS50027: the client assertion is not an RS256 JWT");
  // Signed with a certificate registered on the app.
  std::string x5t = str(jwt->header, "x5t"), x5t256 = str(jwt->header, "x5t#S256");
  if (!x5t.empty() || !x5t256.empty()) {
    for (const auto& pem : app->certificates) {
      auto [t1, t256] = thumbprints(pem);
      if ((x5t256.empty() || x5t256 != t256) && (x5t.empty() || x5t != t1)) continue;
      if (!verify_rs256(*jwt, pem)) break;
      const json& c = jwt->claims;
      if (!audience_has(field_or_null(c, "aud"), token_url) || str(c, "iss") != client_id ||
          str(c, "sub") != client_id || !fresh(c, kMaxAssertionLife)) {
        return refused(401, "invalid_client", "AADSTS700024: the client assertion's aud, iss, sub or lifetime is wrong");
      }
      return ClientAuth{app->principal, 200, "", ""};
    }
    return refused(401, "invalid_client", "AADSTS700027: the client assertion's certificate or signature is not the app's");
  }
  // A federated token: matched by issuer, subject and audience, signed by the issuer's key.
  const json& c = jwt->claims;
  for (const auto& f : app->federated) {
    if (str(c, "iss") != f.issuer || str(c, "sub") != f.subject || !audience_has(field_or_null(c, "aud"), f.audience)) {
      continue;
    }
    if (!verify_rs256(*jwt, f.issuer_key_pem)) continue;  // another record may hold the issuer's next key
    if (!fresh(c, 0)) return refused(400, "invalid_grant", "AADSTS700024: the federated token has expired");
    return ClientAuth{app->principal, 200, "", ""};
  }
  return refused(400, "invalid_grant", "AADSTS70021: No matching federated identity record found for presented assertion");
}

}  // namespace cmkfs::devvault
