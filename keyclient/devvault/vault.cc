#include "keyclient/devvault/vault.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>

#include "crypto/asymmetric.h"
#include "crypto/base/hex.h"
#include "crypto/base/json_integer.h"
#include "keyclient/base64url.h"

namespace cmkfs::devvault {
namespace {

constexpr int64_t kRecoverableDays = 90;
const std::vector<std::string> kRsaOps = {"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"};
const std::vector<std::string> kEcOps = {"sign", "verify"};


// A 32-byte key in a file of its own (mode 0600, created on first use).
Result<crypto::SecretBytes> load_or_create_key(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    crypto::SecretBytes key(crypto::kKeySize);
    ssize_t n = ::read(fd, key.data(), key.size());
    ::close(fd);
    if (n != static_cast<ssize_t>(key.size())) return Status::Corruption(path + " is damaged");
    return key;
  }
  if (errno != ENOENT) return Status::IOError(errno, "cannot read " + path);
  auto key = crypto::random_key();
  if (!key.ok()) return key.status();
  fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError(errno, "cannot create " + path);
  bool ok = ::write(fd, key->data(), key->size()) == static_cast<ssize_t>(key->size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return Status::IOError(EIO, "cannot write " + path);
  return key;
}

bool is_hsm(const std::string& kty) { return kty == "RSA-HSM" || kty == "EC-HSM"; }

std::string pem_aad(const std::string& name, const std::string& version) {
  return "cmkfs-vault/v1/key|" + name + "|" + version;
}

}  // namespace

bool valid_key_name(const std::string& name) {
  static const std::regex re("[0-9a-zA-Z-]{1,127}");
  return std::regex_match(name, re);
}

bool valid_identity_name(const std::string& name) {
  static const std::regex re("[0-9a-zA-Z_-]{1,64}");
  return std::regex_match(name, re);
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string random_hex(size_t bytes) {
  std::vector<uint8_t> b(bytes);
  (void)crypto::random_bytes(b);
  return to_hex(b);
}

std::string random_guid() {
  std::string h = random_hex(16);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

Reply Reply::error(int status, std::string code, std::string message, std::string inner) {
  json e{{"code", std::move(code)}, {"message", std::move(message)}};
  if (!inner.empty()) e["innererror"] = json{{"code", std::move(inner)}};
  return Reply{status, json{{"error", e}}};
}

const crypto::SecretBytes& Vault::master_for(const std::string& kty) const { return is_hsm(kty) ? hsm_master_ : master_; }

Result<std::string> Vault::seal_pem(const std::string& name, const KeyVersion& v) const {
  const crypto::SecretBytes& key = master_for(v.kty);
  std::vector<uint8_t> out(crypto::kNonceSize + v.pem.size() + crypto::kTagSize);
  crypto::MutableBytes b(out);
  CMKFS_RETURN_IF_ERROR(crypto::random_bytes(b.first(crypto::kNonceSize)));
  std::string aad = pem_aad(name, v.version);
  CMKFS_RETURN_IF_ERROR(crypto::gcm_seal(key.bytes(), b.first(crypto::kNonceSize), crypto::as_bytes(aad),
                                         crypto::as_bytes(v.pem), b.subspan(crypto::kNonceSize, v.pem.size()),
                                         b.last(crypto::kTagSize)));
  return to_hex(out);
}

Result<std::string> Vault::open_pem(const std::string& name, const std::string& version, const std::string& kty,
                                    const std::string& sealed) const {
  auto bytes = from_hex(sealed);
  if (!bytes || bytes->size() < crypto::kNonceSize + crypto::kTagSize) return Status::Corruption("sealed key is damaged");
  crypto::Bytes b(*bytes);
  size_t n = b.size() - crypto::kNonceSize - crypto::kTagSize;
  std::string pem(n, '\0');
  std::string aad = pem_aad(name, version);
  Status s = crypto::gcm_open(master_for(kty).bytes(), b.first(crypto::kNonceSize), crypto::as_bytes(aad),
                              b.subspan(crypto::kNonceSize, n), b.last(crypto::kTagSize),
                              {reinterpret_cast<uint8_t*>(pem.data()), n});
  if (!s.ok()) return Status::Corruption("key " + name + "/" + version + " does not open with the vault's master key");
  return pem;
}

Result<std::unique_ptr<Vault>> Vault::open(const std::string& dir, bool purge_protection) {
  std::unique_ptr<Vault> v(new Vault(dir, purge_protection));
  auto master = load_or_create_key(dir + "/master.key");
  if (!master.ok()) return master.status();
  auto hsm = load_or_create_key(dir + "/hsm.key");
  if (!hsm.ok()) return hsm.status();
  v->master_ = std::move(*master);
  v->hsm_master_ = std::move(*hsm);
  std::ifstream in(dir + "/state.json");
  if (in) {
    try {
      CMKFS_RETURN_IF_ERROR(v->load(json::parse(in)));
    } catch (const json::exception& e) {
      return Status::Corruption(dir + "/state.json is damaged: " + e.what());
    }
    v->purge_protection_ = purge_protection && v->purge_protection_;  // once off, stays off
    CMKFS_RETURN_IF_ERROR(v->save());  // seals keys a state file from an older cmkfs-vault held in the clear
    return v;
  }
  v->system_ = Principal{"[system]", random_guid(), random_guid()};
  CMKFS_RETURN_IF_ERROR(v->save());
  return v;
}

json Vault::to_json() const {
  auto principal = [](const Principal& p) {
    return json{{"name", p.name}, {"clientId", p.client_id}, {"principalId", p.principal_id}};
  };
  json ids = json::array();
  for (const auto& p : identities_) ids.push_back(principal(p));
  json keys = json::object();
  for (const auto& [name, k] : keys_) {
    json versions = json::array();
    for (const auto& v : k.versions) {
      auto sealed = seal_pem(name, v);
      if (!sealed.ok()) throw std::runtime_error(sealed.status().message());
      versions.push_back({{"version", v.version}, {"kty", v.kty}, {"sealed", *sealed}, {"key_ops", v.key_ops},
                          {"enabled", v.enabled}, {"created", v.created}, {"updated", v.updated},
                          {"nbf", v.nbf}, {"exp", v.exp}});
    }
    keys[name] = {{"versions", versions}, {"deleted", k.deleted}, {"deletedDate", k.deleted_date},
                  {"scheduledPurgeDate", k.scheduled_purge}};
  }
  json policies = json::object();
  for (const auto& [p, perms] : policies_) policies[p] = perms;
  return json{{"purgeProtection", purge_protection_}, {"system", principal(system_)}, {"identities", ids},
              {"apps", apps_.to_json()}, {"policies", policies}, {"networkAcls", network_.to_json()}, {"keys", keys}};
}

Status Vault::load(const json& j) {
  auto principal = [](const json& p) { return Principal{p.at("name"), p.at("clientId"), p.at("principalId")}; };
  purge_protection_ = j.value("purgeProtection", true);
  system_ = principal(j.at("system"));
  for (const auto& p : j.at("identities")) identities_.push_back(principal(p));
  if (j.contains("apps")) CMKFS_RETURN_IF_ERROR(apps_.load(j.at("apps")));
  for (const auto& [p, perms] : j.at("policies").items()) policies_[p] = perms.get<std::set<std::string>>();
  if (j.contains("networkAcls")) {
    auto acls = NetworkAcls::from_json(j.at("networkAcls"));
    if (!acls.ok()) return acls.status();
    network_ = std::move(*acls);
  }
  for (const auto& [name, k] : j.at("keys").items()) {
    Key key;
    key.deleted = k.at("deleted");
    key.deleted_date = k.at("deletedDate");
    key.scheduled_purge = k.at("scheduledPurgeDate");
    for (const auto& v : k.at("versions")) {
      std::string version = v.at("version"), kty = v.at("kty");
      // "pem": a state file from before keys were sealed; sealed from the next save on.
      auto pem = v.contains("pem") ? Result<std::string>(v.at("pem").get<std::string>())
                                   : open_pem(name, version, kty, v.at("sealed"));
      if (!pem.ok()) return pem.status();
      key.versions.push_back(KeyVersion{version, kty, std::move(*pem), v.at("key_ops"), v.at("enabled"),
                                        v.at("created"), v.at("updated"), v.at("nbf"), v.at("exp")});
    }
    keys_[name] = std::move(key);
  }
  return Status::Ok();
}

// Atomic and durable: a crash leaves the old state or the new one.
Status Vault::save() const {
  std::string path = dir_ + "/state.json", tmp = path + ".tmp";
  std::string text;
  try {
    text = to_json().dump(1);
  } catch (const std::exception& e) {
    return Status::IOError(EIO, std::string("cannot save the vault's state: ") + e.what());
  }
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Status::IOError(errno, "cannot write " + tmp);
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return Status::IOError(errno, "cannot save " + path);
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

// ---- identities and policies ----

Principal Vault::create_identity(const std::string& name) {
  for (const auto& p : identities_) {
    if (p.name == name) return p;
  }
  identities_.push_back(Principal{name, random_guid(), random_guid()});
  (void)save();
  return identities_.back();
}

std::optional<Principal> Vault::identity_by_client_id(const std::string& client_id) const {
  for (const auto& p : identities_) {
    if (p.client_id == client_id) return p;
  }
  return std::nullopt;
}

std::vector<Principal> Vault::identities() const {
  std::vector<Principal> all = identities_;
  all.insert(all.begin(), system_);
  return all;
}

void Vault::set_policy(const std::string& principal_id, const std::set<std::string>& permissions) {
  policies_[principal_id] = permissions;
  (void)save();
}

Status Vault::set_network(NetworkAcls acls) {
  network_ = std::move(acls);
  return save();
}

bool Vault::delete_policy(const std::string& principal_id) {
  bool had = policies_.erase(principal_id) > 0;
  (void)save();
  return had;
}

bool Vault::allowed(const std::string& principal_id, const std::string& permission) const {
  auto it = policies_.find(principal_id);
  if (it == policies_.end()) return false;
  for (const auto& p : it->second) {
    if (p == "all" || strcasecmp(p.c_str(), permission.c_str()) == 0) return true;
  }
  return false;
}

// ---- keys ----

std::string Vault::kid(const std::string& name, const std::string& version) const {
  return base_url_ + "/keys/" + name + "/" + version;
}

Reply Vault::not_found(const std::string& name) const {
  return Reply::error(404, "KeyNotFound", "A key with (name/id) " + name + " was not found in this key vault. If you "
                                          "recently deleted this key you may be able to recover it using the correct "
                                          "recovery command.");
}

const Vault::Key* Vault::live_key(const std::string& name) const {
  auto it = keys_.find(name);
  return it == keys_.end() || it->second.deleted || it->second.versions.empty() ? nullptr : &it->second;
}

const Vault::KeyVersion* Vault::find_version(const Key& k, const std::string& version) const {
  if (version.empty()) return &k.versions.back();
  for (const auto& v : k.versions) {
    if (v.version == version) return &v;
  }
  return nullptr;
}

std::string Vault::resolve_version(const std::string& name, const std::string& version) const {
  auto it = keys_.find(name);
  if (it == keys_.end() || it->second.versions.empty()) return version;
  const KeyVersion* v = find_version(it->second, version);
  return v != nullptr ? v->version : version;
}

json Vault::attributes(const KeyVersion& v) const {
  json a{{"enabled", v.enabled}, {"created", v.created}, {"updated", v.updated},
         {"recoveryLevel", purge_protection_ ? "Recoverable" : "Recoverable+Purgeable"},
         {"recoverableDays", kRecoverableDays}};
  if (v.nbf != 0) a["nbf"] = v.nbf;
  if (v.exp != 0) a["exp"] = v.exp;
  return a;
}

json Vault::bundle(const std::string& name, const KeyVersion& v) const {
  json key{{"kid", kid(name, v.version)}, {"kty", v.kty}, {"key_ops", v.key_ops}};
  auto pair = crypto::KeyPair::from_private_pem(v.pem);
  if (pair.ok() && pair->is_rsa()) {
    key["n"] = keyclient::base64url_encode(pair->rsa_n());
    key["e"] = keyclient::base64url_encode(pair->rsa_e());
  } else if (pair.ok()) {
    key["crv"] = pair->crv();
    key["x"] = keyclient::base64url_encode(pair->ec_x());
    key["y"] = keyclient::base64url_encode(pair->ec_y());
  }
  return json{{"key", key}, {"attributes", attributes(v)}, {"tags", json::object()}, {"managed", false}};
}

Result<Vault::KeyVersion> Vault::new_version(const std::string& kty, int size, const std::string& crv,
                                             const json& body) const {
  bool rsa = kty == "RSA" || kty == "RSA-HSM";
  bool ec = kty == "EC" || kty == "EC-HSM";
  if (!rsa && !ec) return Status::InvalidArgument("kty must be RSA, RSA-HSM, EC or EC-HSM");
  auto pair = rsa ? crypto::KeyPair::generate_rsa(size == 0 ? 2048 : size)
                  : crypto::KeyPair::generate_ec(crv.empty() ? "P-256" : crv);
  if (!pair.ok()) return pair.status();
  auto pem = pair->private_pem();
  if (!pem.ok()) return pem.status();
  KeyVersion v;
  v.version = random_hex(16);
  v.kty = kty;
  v.pem = std::move(*pem);
  v.key_ops = body.contains("key_ops") ? body["key_ops"].get<std::vector<std::string>>() : (rsa ? kRsaOps : kEcOps);
  v.created = v.updated = unix_now();
  if (body.contains("attributes")) {
    const json& a = body["attributes"];
    v.enabled = a.value("enabled", true);
    v.nbf = json_integer_or(a, "nbf", int64_t{0});
    v.exp = json_integer_or(a, "exp", int64_t{0});
  }
  return v;
}

Reply Vault::create_key(const std::string& name, const json& body) {
  if (!valid_key_name(name)) return Reply::error(400, "BadParameter", "Key names may contain only 0-9, a-z, A-Z and -.");
  auto it = keys_.find(name);
  if (it != keys_.end() && it->second.deleted) {
    return Reply::error(409, "Conflict", "Key " + name + " is currently in a deleted but recoverable state, and its "
                                         "name cannot be reused; in this state, the key can only be recovered or purged.",
                        "ObjectIsDeletedButRecoverable");
  }
  try {
    std::string kty = body.value("kty", "");
    auto v = new_version(kty, json_integer_or(body, "key_size", 0), body.value("crv", ""), body);
    if (!v.ok()) return Reply::error(400, "BadParameter", v.status().message());
    keys_[name].versions.push_back(std::move(*v));
  } catch (const json::exception& e) {
    return Reply::error(400, "BadParameter", std::string("malformed request: ") + e.what());
  }
  (void)save();
  return Reply{200, bundle(name, keys_[name].versions.back())};
}

Reply Vault::get_key(const std::string& name, const std::string& version) const {
  const Key* k = live_key(name);
  if (k == nullptr) return not_found(name);
  const KeyVersion* v = find_version(*k, version);
  if (v == nullptr) return not_found(name + "/" + version);
  return Reply{200, bundle(name, *v)};
}

Reply Vault::list_versions(const std::string& name, size_t max_results, size_t skip) const {
  const Key* k = live_key(name);
  if (k == nullptr) return not_found(name);
  max_results = std::clamp<size_t>(max_results == 0 ? 25 : max_results, 1, 25);
  json value = json::array();
  for (size_t i = skip; i < k->versions.size() && value.size() < max_results; ++i) {
    const auto& v = k->versions[i];
    value.push_back({{"kid", kid(name, v.version)}, {"attributes", attributes(v)}, {"tags", json::object()},
                     {"managed", false}});
  }
  json next = nullptr;
  if (skip + max_results < k->versions.size()) {
    next = base_url_ + "/keys/" + name + "/versions?api-version=7.4&maxresults=" + std::to_string(max_results) +
           "&$skiptoken=" + std::to_string(skip + max_results);
  }
  return Reply{200, json{{"value", value}, {"nextLink", next}}};
}

json Vault::key_list() const {
  json all = json::array();
  for (const auto& [name, k] : keys_) {
    json versions = json::array();
    for (const auto& v : k.versions) versions.push_back({{"version", v.version}, {"enabled", v.enabled}, {"created", v.created}});
    all.push_back({{"name", name}, {"kty", k.versions.empty() ? "" : k.versions.back().kty}, {"versions", versions},
                   {"deleted", k.deleted}, {"deletedDate", k.deleted_date}, {"scheduledPurgeDate", k.scheduled_purge}});
  }
  return all;
}

Reply Vault::rotate_key(const std::string& name) {
  const Key* k = live_key(name);
  if (k == nullptr) return not_found(name);
  const KeyVersion& latest = k->versions.back();
  auto pair = crypto::KeyPair::from_private_pem(latest.pem);
  if (!pair.ok()) return Reply::error(500, "InternalError", "stored key is damaged");
  json body{{"key_ops", latest.key_ops}};
  auto v = new_version(latest.kty, pair->is_rsa() ? pair->bits() : 0, pair->is_rsa() ? "" : pair->crv(), body);
  if (!v.ok()) return Reply::error(500, "InternalError", v.status().message());
  keys_[name].versions.push_back(std::move(*v));
  (void)save();
  return Reply{200, bundle(name, keys_[name].versions.back())};
}

Reply Vault::update_key(const std::string& name, const std::string& version, const json& body) {
  const Key* k = live_key(name);
  if (k == nullptr) return not_found(name);
  KeyVersion* v = const_cast<KeyVersion*>(find_version(*k, version));
  if (v == nullptr) return not_found(name + "/" + version);
  try {
    if (body.contains("attributes")) {
      const json& a = body["attributes"];
      if (a.contains("enabled")) v->enabled = a["enabled"];
      if (a.contains("nbf")) v->nbf = a["nbf"];
      if (a.contains("exp")) v->exp = a["exp"];
    }
    if (body.contains("key_ops")) v->key_ops = body["key_ops"].get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    return Reply::error(400, "BadParameter", std::string("malformed request: ") + e.what());
  }
  v->updated = unix_now();
  (void)save();
  return Reply{200, bundle(name, *v)};
}

Reply Vault::delete_key(const std::string& name) {
  if (live_key(name) == nullptr) return not_found(name);
  Key& k = keys_[name];
  k.deleted = true;
  k.deleted_date = unix_now();
  k.scheduled_purge = k.deleted_date + kRecoverableDays * 86400;
  (void)save();
  return get_deleted_key(name);
}

Reply Vault::get_deleted_key(const std::string& name) const {
  auto it = keys_.find(name);
  if (it == keys_.end() || !it->second.deleted) {
    return Reply::error(404, "KeyNotFound", "Deleted Key not found: " + name);
  }
  json b = bundle(name, it->second.versions.back());
  b["recoveryId"] = base_url_ + "/deletedkeys/" + name;
  b["deletedDate"] = it->second.deleted_date;
  b["scheduledPurgeDate"] = it->second.scheduled_purge;
  return Reply{200, b};
}

Reply Vault::recover_key(const std::string& name) {
  auto it = keys_.find(name);
  if (it == keys_.end() || !it->second.deleted) return Reply::error(404, "KeyNotFound", "Deleted Key not found: " + name);
  it->second.deleted = false;
  it->second.deleted_date = it->second.scheduled_purge = 0;
  (void)save();
  return Reply{200, bundle(name, it->second.versions.back())};
}

Reply Vault::purge_key(const std::string& name) {
  auto it = keys_.find(name);
  if (it == keys_.end() || !it->second.deleted) return Reply::error(404, "KeyNotFound", "Deleted Key not found: " + name);
  if (purge_protection_) {
    return Reply::error(403, "Forbidden", "Operation \"purge\" is not allowed because purge protection is enabled for "
                                          "this vault. Key Vault service will automatically purge it after the "
                                          "retention period has passed.");
  }
  keys_.erase(it);
  (void)save();
  return Reply{204, nullptr};
}

Reply Vault::wrap(const std::string& name, const std::string& version, const json& body, bool unwrap) const {
  const std::string op = unwrap ? "unwrapKey" : "wrapKey";
  const Key* k = live_key(name);
  if (k == nullptr) return not_found(name);
  const KeyVersion* v = find_version(*k, version);
  if (v == nullptr) return not_found(name + "/" + version);
  if (!v->enabled) return Reply::error(403, "Forbidden", "Operation " + op + " is not allowed on a disabled key.", "KeyDisabled");
  int64_t now = unix_now();
  if ((v->nbf != 0 && now < v->nbf) || (v->exp != 0 && now > v->exp)) {
    return Reply::error(403, "Forbidden", "Operation " + op + " is not allowed: the key is not yet valid or expired.",
                        "KeyDisabled");
  }
  if (std::find(v->key_ops.begin(), v->key_ops.end(), op) == v->key_ops.end()) {
    return Reply::error(403, "Forbidden", "Operation " + op + " is not permitted by the key's key_ops.",
                        "KeyOperationForbidden");
  }
  std::string alg;
  std::optional<std::vector<uint8_t>> value;
  try {
    alg = body.at("alg");
    value = keyclient::base64url_decode(body.at("value").get<std::string>());
  } catch (const json::exception&) {
    return Reply::error(400, "BadParameter", "The request needs alg and value.");
  }
  if (!value) return Reply::error(400, "BadParameter", "value is not base64url.");
  if (alg != "RSA-OAEP-256" && alg != "RSA-OAEP") {
    return Reply::error(400, "BadParameter", "Algorithm " + alg + " is not supported here; use RSA-OAEP-256 or RSA-OAEP.");
  }
  auto pair = crypto::KeyPair::from_private_pem(v->pem);
  if (!pair.ok()) return Reply::error(500, "InternalError", "stored key is damaged");
  if (!pair->is_rsa()) return Reply::error(400, "BadParameter", "Key and algorithm are incompatible: " + alg + " needs an RSA key.");
  auto hash = alg == "RSA-OAEP-256" ? crypto::OaepHash::kSha256 : crypto::OaepHash::kSha1;
  std::string out;
  if (unwrap) {
    auto plain = pair->oaep_decrypt(*value, hash);
    if (!plain.ok()) return Reply::error(400, "BadParameter", "The parameter is incorrect (unwrap failed).");
    out = keyclient::base64url_encode(plain->bytes());
  } else {
    auto cipher = pair->oaep_encrypt(*value, hash);
    if (!cipher.ok()) return Reply::error(400, "BadParameter", cipher.status().message());
    out = keyclient::base64url_encode(*cipher);
  }
  return Reply{200, json{{"kid", kid(name, v->version)}, {"value", out}}};
}

}  // namespace cmkfs::devvault
