// A key in an HSM, reached through its PKCS#11 module. An AES-256 key wraps the DEK with
// CKM_AES_KEY_WRAP_PAD (RFC 5649); an RSA key pair with CKM_RSA_PKCS_OAEP, SHA-256 where the token
// offers it, else SHA-1 (SoftHSM 2.6), the choice recorded with the wrapped key. The DEK enters the
// token as a session object only for the wrap; unwrapping makes an extractable session object that
// is read and destroyed at once.
//
// Versions are key objects with the same label and different CKA_IDs: without an id the URI
// follows the highest (rotation = a newer object), with one it pins that object.
//
// One session per provider, logged in once and reused for every check; a new one (and a new
// login) only when the module says the old one is gone. The PIN is read from its file for each
// login, never kept, and never tried when the token says one more failure would lock it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

#include "keyclient/host_path.h"
#include "keyclient/keyclient.h"
#include "keyclient/pkcs11_module.h"
#include "keyclient/pkcs11_uri.h"

namespace cmkfs::keyclient {
namespace {

constexpr const char* kAesAlg = "AES-KWP";
constexpr const char* kOaep256 = "RSA-OAEP-256";
constexpr const char* kOaep1 = "RSA-OAEP";
constexpr size_t kMaxPin = 256;
constexpr size_t kMaxIdBytes = 256;
constexpr CK_ULONG kMaxSlots = 64;
constexpr CK_ULONG kMaxObjects = 1024;  // key objects under one label: more is refused, not cut short

// What identifies a PIN file's content without reading it: a login refused with one is not tried
// again until the file changes (each refusal counts towards locking the token).
struct PinStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  int64_t mtime_ns = 0;
  off_t size = 0;
  bool operator==(const PinStamp&) const = default;
};

// PINs the token refused, for the whole process: a provider is made again whenever a store's
// settings change (and a store can change them), so a record kept per provider would let the store
// have the refused PIN tried at every key check until the token locks.
class RefusedPins {
 public:
  bool refused(const std::string& who, const PinStamp& pin) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = refused_.find(who);
    return it != refused_.end() && it->second == pin;
  }
  void record(const std::string& who, const std::optional<PinStamp>& pin) {
    std::lock_guard<std::mutex> g(mu_);
    if (!pin) {
      refused_.erase(who);
    } else if (refused_.size() < kMaxRefused || refused_.count(who)) {
      refused_[who] = *pin;
    }
  }
  static RefusedPins& instance() {
    static RefusedPins* pins = new RefusedPins;  // never destroyed: providers may outlive statics
    return *pins;
  }

 private:
  static constexpr size_t kMaxRefused = 1024;  // the host's own settings name a handful
  std::mutex mu_;
  std::map<std::string, PinStamp> refused_;
};

Result<crypto::SecretBytes> read_pin(const std::string& path, PinStamp* stamp) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    int code = err == ENOENT ? ENOKEY : (err == EACCES || err == EPERM || err == ELOOP) ? EACCES : EAGAIN;
    return Status(code, "cannot open the PIN file " + path + ": " + std::strerror(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument("the PIN file " + path + " is not a regular file");
  }
  *stamp = PinStamp{st.st_dev, st.st_ino, int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, st.st_size};
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) {
    ::close(fd);
    return Status::AccessDenied("the PIN file " + path + " belongs to another user");
  }
  // Whoever could replace the file could have the token count wrong PINs until it locks.
  if (Status dirs = check_host_dirs(path, "the PIN file"); !dirs.ok()) {
    ::close(fd);
    return dirs;
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return Status::AccessDenied("the PIN file " + path + " is accessible by group or others; run: chmod 600 " + path);
  }
  crypto::SecretBytes buf(kMaxPin + 1);
  ssize_t n = ::read(fd, buf.data(), buf.size());
  ::close(fd);
  if (n < 0 || size_t(n) > kMaxPin) return Status::InvalidArgument("the PIN file " + path + " is not a PIN");
  size_t len = size_t(n);
  while (len > 0 && (buf.data()[len - 1] == '\n' || buf.data()[len - 1] == '\r')) --len;
  if (len == 0) return Status::InvalidArgument("the PIN file " + path + " is empty");
  crypto::SecretBytes pin(len);
  std::memcpy(pin.data(), buf.data(), len);
  return pin;
}

// A blank-padded CK_UTF8CHAR field of token info, without its padding.
template <size_t N>
std::string field(const CK_UTF8CHAR (&f)[N]) {
  std::string s(reinterpret_cast<const char*>(f), N);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

// CKA_IDs compared as unsigned big-endian numbers: 0x0a after 0x09, 0x0100 after 0xff.
bool id_less(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  auto strip = [](const std::vector<uint8_t>& v) {
    auto it = std::find_if(v.begin(), v.end(), [](uint8_t c) { return c != 0; });
    return std::vector<uint8_t>(it, v.end());
  };
  auto x = strip(a), y = strip(b);
  if (x.size() != y.size()) return x.size() < y.size();
  return x != y ? x < y : a.size() < b.size();
}

struct KeyObject {
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  CK_OBJECT_CLASS cls = 0;
  CK_KEY_TYPE type = 0;
  std::vector<uint8_t> id;
};

class Pkcs11Provider : public KeyProvider {
 public:
  Pkcs11Provider(Pkcs11Uri uri, CK_FUNCTION_LIST* f) : uri_(std::move(uri)), f_(f) {}
  ~Pkcs11Provider() override {
    if (session_ != CK_INVALID_HANDLE) f_->C_CloseSession(session_);
  }

  Result<WrappedKey> wrap(const crypto::SecretBytes& dek) override {
    return in_session<WrappedKey>([&]() -> Result<WrappedKey> {
      auto key = latest(/*strict=*/false);
      if (!key.ok()) return key.status();
      return wrap_with(*key, dek);
    });
  }

  Result<crypto::SecretBytes> unwrap(const WrappedKey& w) override {
    if (w.provider != ProviderKind::kPkcs11) return Status::InvalidArgument("the data key was not wrapped by a PKCS#11 key");
    auto by = Pkcs11Uri::parse(w.key_id);
    if (!by.ok() || !by->id) return Status::Corruption("the wrapped data key names no PKCS#11 key version: " + w.key_id);
    if (!by->same_key(uri_)) return Status(EKEYREJECTED, "the data key was wrapped by another PKCS#11 key: " + w.key_id);
    return in_session<crypto::SecretBytes>([&]() -> Result<crypto::SecretBytes> {
      auto key = choose(by->id);
      if (!key.ok()) return key.status();
      return unwrap_with(*key, w);
    });
  }

  Result<std::string> current_key_id() override {
    return in_session<std::string>([&]() -> Result<std::string> {
      auto key = latest(/*strict=*/true);
      if (!key.ok()) return key.status();
      return version_name(*key);
    });
  }

  bool revocable() const override { return true; }

  Status validate() override {
    auto checked = in_session<KeyObject>([&] { return latest(/*strict=*/true); });
    if (!checked.ok()) return checked.status();
    return prove_round_trip(*this, "the token");
  }

 private:
  // Runs `op` in the session, opening (and logging in) first if needed; once more in a new
  // session when the module says the old one is gone.
  template <class T, class Op>
  Result<T> in_session(Op op) {
    std::lock_guard<std::mutex> g(mu_);
    for (int attempt = 0;; ++attempt) {
      lost_ = false;
      if (session_ == CK_INVALID_HANDLE) {
        Status s = open_session();
        if (!s.ok()) return s;
      }
      Result<T> r = op();
      if (r.ok() || !lost_ || attempt == 1) return r;
      f_->C_CloseSession(session_);
      session_ = CK_INVALID_HANDLE;
    }
  }

  Status check(CK_RV rv, const std::string& what) {
    if (rv == CKR_OK) return Status::Ok();
    if (pkcs11_session_lost(rv)) lost_ = true;
    return pkcs11_status(rv, what);
  }

  // Which login a refused PIN belongs to: the module, the token it found (whatever the URI calls
  // it), and the PIN file (the stamp's device and inode).
  std::string login_name(const CK_TOKEN_INFO& info, const PinStamp& pin) const {
    return uri_.module_path + '\n' + field(info.manufacturerID) + '\n' + field(info.model) + '\n' +
           field(info.serialNumber) + '\n' + field(info.label) + '\n' + std::to_string(pin.dev) + ':' +
           std::to_string(pin.ino);
  }

  std::string token_name() const { return uri_.token.empty() ? "the token" : "token " + uri_.token; }

  Status open_session() {
    CK_ULONG n = 0;
    CMKFS_RETURN_IF_ERROR(check(f_->C_GetSlotList(CK_TRUE, nullptr, &n), "cannot list the module's slots"));
    std::vector<CK_SLOT_ID> slots(std::min(n, kMaxSlots));
    n = slots.size();
    if (n > 0) CMKFS_RETURN_IF_ERROR(check(f_->C_GetSlotList(CK_TRUE, slots.data(), &n), "cannot list the module's slots"));
    slots.resize(std::min<CK_ULONG>(n, slots.size()));
    std::optional<CK_SLOT_ID> found;
    CK_TOKEN_INFO info{};
    for (CK_SLOT_ID slot : slots) {
      CK_TOKEN_INFO ti{};
      CK_RV rv = f_->C_GetTokenInfo(slot, &ti);
      if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED) continue;
      CMKFS_RETURN_IF_ERROR(check(rv, "cannot read the token's information"));  // a device error is an outage
      if (!(ti.flags & CKF_TOKEN_INITIALIZED)) continue;
      if ((!uri_.token.empty() && field(ti.label) != uri_.token) ||
          (!uri_.manufacturer.empty() && field(ti.manufacturerID) != uri_.manufacturer) ||
          (!uri_.serial.empty() && field(ti.serialNumber) != uri_.serial) ||
          (!uri_.model.empty() && field(ti.model) != uri_.model)) {
        continue;
      }
      if (found) return Status::InvalidArgument("more than one token matches the pkcs11: URI; name it with token=");
      found = slot;
      info = ti;
    }
    if (!found) return Status(ENOKEY, token_name() + " is not present");
    if (info.flags & CKF_USER_PIN_LOCKED) return Status(EACCES, token_name() + "'s user PIN is locked");
    if (info.flags & CKF_USER_PIN_FINAL_TRY) {
      return Status(EACCES, token_name() + " would lock its user PIN after one more wrong one; cmkfs does not try");
    }
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    CMKFS_RETURN_IF_ERROR(check(f_->C_OpenSession(*found, CKF_SERIAL_SESSION, nullptr, nullptr, &h),
                                "cannot open a session with " + token_name()));
    PinStamp stamp;
    auto pin = read_pin(uri_.pin_source, &stamp);
    if (pin.ok() && RefusedPins::instance().refused(login_name(info, stamp), stamp)) {
      pin = Status(EACCES, token_name() + " refused the PIN in " + uri_.pin_source +
                               "; cmkfs tries again when the file changes (each refusal counts towards locking it)");
    }
    if (!pin.ok()) {
      f_->C_CloseSession(h);
      return pin.status();
    }
    CK_RV rv = f_->C_Login(h, CKU_USER, pin->data(), pin->size());
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
      f_->C_CloseSession(h);
      if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE) {
        RefusedPins::instance().record(login_name(info, stamp), stamp);
      }
      return pkcs11_status(rv, token_name() + " refused the PIN in " + uri_.pin_source);
    }
    RefusedPins::instance().record(login_name(info, stamp), std::nullopt);
    session_ = h;
    return Status::Ok();
  }

  Result<std::vector<uint8_t>> bytes_attribute(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, size_t max) {
    CK_ATTRIBUTE a{type, nullptr, 0};
    CMKFS_RETURN_IF_ERROR(check(f_->C_GetAttributeValue(session_, h, &a, 1), "cannot read a key attribute"));
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > max) {
      return Status(EBADMSG, "the token gave a key attribute of a bad size");
    }
    std::vector<uint8_t> v(a.ulValueLen);
    a.pValue = v.data();
    CMKFS_RETURN_IF_ERROR(check(f_->C_GetAttributeValue(session_, h, &a, 1), "cannot read a key attribute"));
    v.resize(std::min<CK_ULONG>(a.ulValueLen, v.size()));
    return v;
  }

  Result<CK_ULONG> ulong_attribute(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    CK_ULONG v = 0;
    CK_ATTRIBUTE a{type, &v, sizeof v};
    CMKFS_RETURN_IF_ERROR(check(f_->C_GetAttributeValue(session_, h, &a, 1), "cannot read a key attribute"));
    if (a.ulValueLen != sizeof v) return Status(EBADMSG, "the token gave a key attribute of a bad size");
    return v;
  }

  // Every object matching `tmpl`, in batches until the module has no more.
  Result<std::vector<CK_OBJECT_HANDLE>> find(std::vector<CK_ATTRIBUTE> tmpl) {
    CMKFS_RETURN_IF_ERROR(check(f_->C_FindObjectsInit(session_, tmpl.data(), tmpl.size()), "cannot search the token"));
    std::vector<CK_OBJECT_HANDLE> found;
    Status s;
    for (;;) {
      CK_OBJECT_HANDLE batch[64];
      CK_ULONG n = 0;
      s = check(f_->C_FindObjects(session_, batch, 64, &n), "cannot search the token");
      if (!s.ok() || n == 0) break;
      found.insert(found.end(), batch, batch + std::min<CK_ULONG>(n, 64));
      if (found.size() > kMaxObjects) {
        s = Status(EBADMSG, "more than " + std::to_string(kMaxObjects) + " objects are labelled " + uri_.object);
        break;
      }
    }
    f_->C_FindObjectsFinal(session_);
    if (!s.ok()) return s;
    return found;
  }

  // Neither true nor false unless the module says which: a module that leaves the value unset
  // must not pass for CK_FALSE (an extractable key would then count as unextractable).
  Result<bool> bool_attribute(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    CK_BBOOL v = 0xa5;
    CK_ATTRIBUTE a{type, &v, sizeof v};
    CMKFS_RETURN_IF_ERROR(check(f_->C_GetAttributeValue(session_, h, &a, 1), "cannot read a key attribute"));
    if (a.ulValueLen != sizeof v || (v != CK_TRUE && v != CK_FALSE)) {
      return Status(EBADMSG, "the token gave a key attribute that is neither true nor false");
    }
    return v == CK_TRUE;
  }

  // A key fit to protect the data key: private to the logged-in user, sensitive, never to be
  // extracted. Anyone may create public objects on many tokens without a PIN: a planted
  // extractable key of known value with a higher CKA_ID must never become the next version.
  Result<bool> guarded(CK_OBJECT_HANDLE h) {
    for (auto [type, want] : {std::pair{CKA_PRIVATE, true}, {CKA_SENSITIVE, true}, {CKA_EXTRACTABLE, false}}) {
      auto v = bool_attribute(h, type);
      if (!v.ok()) return v.status();
      if (*v != want) return false;
    }
    return true;
  }

  // The keys labelled uri_.object that unwrap, highest CKA_ID first: the one with CKA_ID `id`, or all.
  Result<std::vector<KeyObject>> candidates(const std::optional<std::vector<uint8_t>>& id) {
    std::vector<CK_ATTRIBUTE> tmpl{{CKA_LABEL, const_cast<char*>(uri_.object.data()), uri_.object.size()}};
    if (id) tmpl.push_back({CKA_ID, const_cast<uint8_t*>(id->data()), id->size()});
    auto handles = find(tmpl);
    if (!handles.ok()) return handles.status();
    std::vector<KeyObject> found;
    for (CK_OBJECT_HANDLE h : *handles) {
      KeyObject k{h, 0, 0, {}};
      auto cls = ulong_attribute(h, CKA_CLASS);
      if (!cls.ok()) return cls.status();
      k.cls = *cls;
      bool secret = k.cls == CKO_SECRET_KEY && uri_.type != "private";
      bool priv = k.cls == CKO_PRIVATE_KEY && uri_.type != "secret";
      if (!secret && !priv) continue;
      auto type = ulong_attribute(h, CKA_KEY_TYPE);
      if (!type.ok()) return type.status();
      k.type = *type;
      if ((secret && k.type != CKK_AES) || (priv && k.type != CKK_RSA)) continue;
      auto safe = guarded(h);
      if (!safe.ok()) return safe.status();
      if (!*safe) continue;
      auto kid = bytes_attribute(h, CKA_ID, kMaxIdBytes);
      if (!kid.ok()) return kid.status();
      k.id = std::move(*kid);
      if (k.id.empty()) continue;  // a version is named by its CKA_ID
      found.push_back(std::move(k));
    }
    std::stable_sort(found.begin(), found.end(), [](const KeyObject& a, const KeyObject& b) { return id_less(b.id, a.id); });
    if (found.empty()) {
      return Status(ENOKEY, "no private, sensitive, unextractable AES or RSA key labelled '" + uri_.object + "'" +
                                (id ? " with the id in " + uri_.with_id(*id).str() : std::string()) + " on " +
                                token_name());
    }
    return found;
  }

  // The key that unwraps: with CKA_ID `id`, or the highest CKA_ID.
  Result<KeyObject> choose(const std::optional<std::vector<uint8_t>>& id) {
    auto found = candidates(id);
    if (!found.ok()) return found.status();
    return std::move(found->front());
  }

  // The key new wraps use: the configured version or, without one, the newest, whose strength is
  // checked each time (an automatic rotation may bring a version nobody vetted). A weak newest
  // version is an error for the rotation poll and init (`strict`), which report it; a wrap takes
  // the newest strong one meanwhile, so a data-key rotation still works.
  Result<KeyObject> latest(bool strict) {
    auto found = candidates(uri_.id);
    if (!found.ok()) return found.status();
    Status first;
    for (auto& key : *found) {
      Status s = strong_enough(key);
      if (s.ok()) return std::move(key);
      if (s.code() != EKEYREJECTED || strict) return s;
      if (first.ok()) first = s;
    }
    return first;
  }

  Status strong_enough(const KeyObject& key) {
    if (key.type == CKK_AES) {
      auto len = ulong_attribute(key.handle, CKA_VALUE_LEN);
      if (!len.ok()) return len.status();
      if (*len != crypto::kKeySize) return Status(EKEYREJECTED, "the token's AES key " + version_name(key) + " is not 256 bits");
      return Status::Ok();
    }
    auto modulus = bytes_attribute(key.handle, CKA_MODULUS, 2048);
    if (!modulus.ok()) return modulus.status();
    auto top = std::find_if(modulus->begin(), modulus->end(), [](uint8_t b) { return b != 0; });
    size_t bits = top == modulus->end() ? 0 : size_t(modulus->end() - top - 1) * 8 + std::bit_width(unsigned(*top));
    if (bits < 2048) return Status(EKEYREJECTED, "the token's RSA key " + version_name(key) + " has fewer than 2048 bits");
    return Status::Ok();
  }

  std::string version_name(const KeyObject& key) const { return uri_.with_id(key.id).str(); }

  Result<CK_OBJECT_HANDLE> public_key(const KeyObject& priv) {
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    auto handles = find({{CKA_CLASS, &cls, sizeof cls},
                         {CKA_LABEL, const_cast<char*>(uri_.object.data()), uri_.object.size()},
                         {CKA_ID, const_cast<uint8_t*>(priv.id.data()), priv.id.size()}});
    if (!handles.ok()) return handles.status();
    if (handles->empty()) return Status(ENOKEY, "the RSA key '" + uri_.object + "' has no public key object on " + token_name());
    if (handles->size() > 1) {
      return Status(EKEYREJECTED, "more than one public key is labelled '" + uri_.object + "' with this id: cmkfs wraps with none");
    }
    // The public half must be the private key's: a planted public key would take the data key.
    for (CK_ATTRIBUTE_TYPE part : {CKA_MODULUS, CKA_PUBLIC_EXPONENT}) {
      auto mine = bytes_attribute(priv.handle, part, 2048);
      auto theirs = bytes_attribute(handles->front(), part, 2048);
      if (!mine.ok()) return mine.status();
      if (!theirs.ok()) return theirs.status();
      if (*mine != *theirs) {
        return Status(EKEYREJECTED, "the public key labelled '" + uri_.object + "' is not the private key's half");
      }
    }
    return handles->front();
  }

  // The mechanism for `alg`; OAEP's parameters live in `oaep`.
  static CK_MECHANISM mechanism(const std::string& alg, CK_RSA_PKCS_OAEP_PARAMS& oaep) {
    if (alg == kAesAlg) return {CKM_AES_KEY_WRAP_PAD, nullptr, 0};
    bool sha256 = alg == kOaep256;
    oaep = {sha256 ? CKM_SHA256 : CKM_SHA_1, sha256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, nullptr, 0};
    return {CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
  }

  Result<WrappedKey> wrap_with(const KeyObject& key, const crypto::SecretBytes& dek) {
    CK_OBJECT_HANDLE wrapping = key.handle;
    if (key.cls == CKO_PRIVATE_KEY) {
      auto pub = public_key(key);
      if (!pub.ok()) return pub.status();
      wrapping = *pub;
    }
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    std::vector<CK_ATTRIBUTE> tmpl{{CKA_CLASS, &cls, sizeof cls},      {CKA_KEY_TYPE, &type, sizeof type},
                                   {CKA_TOKEN, &no, sizeof no},        {CKA_SENSITIVE, &no, sizeof no},
                                   {CKA_EXTRACTABLE, &yes, sizeof yes}, {CKA_VALUE, const_cast<uint8_t*>(dek.data()), dek.size()}};
    CK_OBJECT_HANDLE tmp = CK_INVALID_HANDLE;
    CMKFS_RETURN_IF_ERROR(check(f_->C_CreateObject(session_, tmpl.data(), tmpl.size(), &tmp), "the token did not take the key to wrap"));
    std::vector<std::string> algs = key.cls == CKO_SECRET_KEY ? std::vector<std::string>{kAesAlg}
                                                              : std::vector<std::string>{kOaep256, kOaep1};
    Result<WrappedKey> out = Status(EAGAIN, "not wrapped");
    for (const std::string& alg : algs) {
      CK_RSA_PKCS_OAEP_PARAMS oaep{};
      CK_MECHANISM mech = mechanism(alg, oaep);
      std::vector<uint8_t> blob(1024);
      CK_ULONG len = blob.size();
      CK_RV rv = f_->C_WrapKey(session_, &mech, wrapping, tmp, blob.data(), &len);
      // SoftHSM 2.6 offers OAEP with SHA-1 only; SHA-256 is tried first.
      if ((rv == CKR_MECHANISM_PARAM_INVALID || rv == CKR_ARGUMENTS_BAD) && alg == kOaep256) continue;
      Status s = check(rv, "the token did not wrap the data key with " + uri_.object);
      if (s.ok() && (len == 0 || len > blob.size())) s = Status(EBADMSG, "the token wrapped the data key into nothing");
      if (!s.ok()) {
        out = s;
        break;
      }
      blob.resize(len);
      out = WrappedKey{ProviderKind::kPkcs11, uri_.with_id(key.id).str(), alg, std::move(blob), {}};
      break;
    }
    f_->C_DestroyObject(session_, tmp);
    return out;
  }

  Result<crypto::SecretBytes> unwrap_with(const KeyObject& key, const WrappedKey& w) {
    if ((key.cls == CKO_SECRET_KEY) != (w.alg == kAesAlg) || (w.alg != kAesAlg && w.alg != kOaep256 && w.alg != kOaep1)) {
      return Status(EKEYREJECTED, "the data key was wrapped with " + w.alg + ", which " + uri_.object + " does not do");
    }
    CK_RSA_PKCS_OAEP_PARAMS oaep{};
    CK_MECHANISM mech = mechanism(w.alg, oaep);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    std::vector<CK_ATTRIBUTE> tmpl{{CKA_CLASS, &cls, sizeof cls}, {CKA_KEY_TYPE, &type, sizeof type},
                                   {CKA_TOKEN, &no, sizeof no},   {CKA_SENSITIVE, &no, sizeof no},
                                   {CKA_EXTRACTABLE, &yes, sizeof yes}};
    CK_OBJECT_HANDLE out = CK_INVALID_HANDLE;
    CMKFS_RETURN_IF_ERROR(check(f_->C_UnwrapKey(session_, &mech, key.handle, const_cast<uint8_t*>(w.blob.data()),
                                                w.blob.size(), tmpl.data(), tmpl.size(), &out),
                                "the token did not unwrap the data key with " + uri_.with_id(key.id).str()));
    crypto::SecretBytes dek(crypto::kKeySize);
    CK_ATTRIBUTE value{CKA_VALUE, nullptr, 0};
    CK_RV rv = f_->C_GetAttributeValue(session_, out, &value, 1);
    if (rv == CKR_OK && value.ulValueLen == dek.size()) {
      value.pValue = dek.data();
      rv = f_->C_GetAttributeValue(session_, out, &value, 1);
    }
    if (rv == CKR_OK && value.ulValueLen != dek.size()) rv = CKR_WRAPPED_KEY_LEN_RANGE;  // asked twice: checked twice
    f_->C_DestroyObject(session_, out);
    CMKFS_RETURN_IF_ERROR(check(rv, "the token unwrapped something that is not a data key"));
    return dek;
  }

  Pkcs11Uri uri_;
  CK_FUNCTION_LIST* f_;
  std::mutex mu_;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
  bool lost_ = false;
};

}  // namespace

Result<std::unique_ptr<KeyProvider>> make_pkcs11_provider(const KekConfig& config) {
  auto uri = Pkcs11Uri::parse(config.key_identifier);
  if (!uri.ok()) return uri.status();
  auto module = load_pkcs11_module(uri->module_path);
  if (!module.ok()) return module.status();
  return std::unique_ptr<KeyProvider>(new Pkcs11Provider(std::move(*uri), *module));
}

}  // namespace cmkfs::keyclient
