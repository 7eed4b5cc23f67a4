// A key behind a Kubernetes KMS v2 plugin (k8s.io/kms/apis/v2), spoken to as kube-apiserver
// does: unary gRPC over a unix socket, a deadline on every call, no waiting for a plugin that is
// not there. Encrypt wraps the DEK; the key_id and annotations it returns are kept with the
// wrapped key and given back to Decrypt. Status's key_id is the truth about the current key: a
// change is a rotation (the key monitor rewraps), and Encrypt must have used that same key.
//
// Every answer is checked as kube-apiserver checks it before anything is kept (version "v2",
// healthz "ok", key ids and ciphertexts of 1 to 1024 bytes, annotation keys that are domain names
// of two labels or more, 32 KiB of annotations at most), and a Decrypt must give back 32 bytes.
// The socket must belong to root (or this user), and every directory above it too, unwritable by
// others (keyclient/host_path.h): the DEK is sent to whoever listens there. Errors: a plugin that is down, slow or unhealthy is an outage
// (EAGAIN, the offline grace applies), and so is a malformed answer or INVALID_ARGUMENT;
// PERMISSION_DENIED/UNAUTHENTICATED EACCES, NOT_FOUND ENOKEY, FAILED_PRECONDITION EKEYREJECTED.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>

#include "crypto/base/hex.h"
#include "keyclient/host_path.h"
#include "keyclient/keyclient.h"
#include "keyclient/kms2/api.grpc.pb.h"

namespace cmkfs::keyclient {
namespace {

constexpr const char* kAlg = "KMSv2";
constexpr size_t kMaxKeyId = 1024;
constexpr size_t kMaxCiphertext = 1024;
constexpr size_t kMaxAnnotations = 32 * 1024;
constexpr int kMaxReply = 64 * 1024;

// The plugin's words, bounded and printable, for a log line.
std::string plugin_text(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 200)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return "'" + out + (s.size() > 200 ? "...'" : "'");
}

Status from_grpc(const grpc::Status& s, const std::string& what) {
  std::string m = what + ": " + plugin_text(s.error_message()) + " (gRPC " + std::to_string(s.error_code()) + ")";
  switch (s.error_code()) {
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED: return Status(EACCES, m);
    case grpc::StatusCode::NOT_FOUND: return Status(ENOKEY, m);
    case grpc::StatusCode::FAILED_PRECONDITION: return Status(EKEYREJECTED, m);
    case grpc::StatusCode::DEADLINE_EXCEEDED: return Status(ETIMEDOUT, m);
    default: return Status(EAGAIN, m);
  }
}

// RFC 1123 subdomain of at least two labels; one trailing dot tolerated (kube-apiserver's rule).
bool annotation_key_ok(std::string k) {
  if (!k.empty() && k.back() == '.') k.pop_back();
  if (k.empty() || k.size() > 253) return false;
  size_t labels = 0;
  size_t start = 0;
  while (start <= k.size()) {
    size_t end = k.find('.', start);
    if (end == std::string::npos) end = k.size();
    std::string_view label(k.data() + start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    ++labels;
    start = end + 1;
  }
  return labels >= 2;
}

// A key id goes into logs and the audit log: printable, no spaces, 1 to 1024 bytes.
Status check_key_id(const std::string& id, const char* from) {
  if (id.empty() || id.size() > kMaxKeyId) {
    return Status(EBADMSG, std::string("the KMS plugin's ") + from + " gave a key_id of " + std::to_string(id.size()) +
                               " bytes (1 to 1024 allowed)");
  }
  for (unsigned char c : id) {
    if (c <= 0x20 || c >= 0x7f) return Status(EBADMSG, std::string("the KMS plugin's ") + from + " gave a key_id with a space or control character");
  }
  return Status::Ok();
}

std::string new_uid() {
  auto r = crypto::random_key();
  return r.ok() ? to_hex(std::span<const uint8_t>(r->data(), 16)) : "cmkfs";
}

class Kms2Provider : public KeyProvider {
 public:
  Kms2Provider(std::string endpoint, std::string socket, double timeout_seconds)
      : endpoint_(std::move(endpoint)), timeout_(timeout_seconds) {
    grpc::ChannelArguments args;
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, "localhost");
    args.SetMaxReceiveMessageSize(kMaxReply);
    stub_ = v2::KeyManagementService::NewStub(
        grpc::CreateCustomChannel("unix://" + socket, grpc::InsecureChannelCredentials(), args));
  }

  Result<WrappedKey> wrap(const crypto::SecretBytes& dek) override {
    auto current = current_key_id();
    if (!current.ok()) return current.status();
    v2::EncryptRequest req;
    req.set_plaintext(std::string(reinterpret_cast<const char*>(dek.data()), dek.size()));
    req.set_uid(new_uid());
    v2::EncryptResponse resp;
    grpc::ClientContext ctx;
    deadline(ctx);
    grpc::Status s = stub_->Encrypt(&ctx, req, &resp);
    req.mutable_plaintext()->assign(req.plaintext().size(), '\0');
    if (!s.ok()) return from_grpc(s, "the KMS plugin at " + endpoint_ + " did not encrypt");
    CMKFS_RETURN_IF_ERROR(check_key_id(resp.key_id(), "Encrypt"));
    if (resp.key_id() != *current) {
      return Status(EBADMSG, "the KMS plugin encrypted with key " + plugin_text(resp.key_id()) + ", not with " +
                                 plugin_text(*current) + " that its Status names");
    }
    if (resp.ciphertext().empty() || resp.ciphertext().size() > kMaxCiphertext) {
      return Status(EBADMSG, "the KMS plugin gave a ciphertext of " + std::to_string(resp.ciphertext().size()) +
                                 " bytes (1 to 1024 allowed)");
    }
    WrappedKey w{ProviderKind::kKms2, resp.key_id(), kAlg, {resp.ciphertext().begin(), resp.ciphertext().end()}, {}};
    size_t total = 0;
    for (const auto& [k, v] : resp.annotations()) {
      if (!annotation_key_ok(k)) {
        return Status(EBADMSG, "the KMS plugin gave an annotation key that is not a domain name: " + plugin_text(k));
      }
      total += k.size() + v.size();
      w.annotations[k] = std::vector<uint8_t>(v.begin(), v.end());
    }
    if (total > kMaxAnnotations) return Status(EBADMSG, "the KMS plugin gave more than 32 KiB of annotations");
    return w;
  }

  Result<crypto::SecretBytes> unwrap(const WrappedKey& w) override {
    if (w.provider != ProviderKind::kKms2 || w.alg != kAlg) {
      return Status::InvalidArgument("the data key was not wrapped by a KMS v2 plugin");
    }
    // What the store holds is checked as kube-apiserver checks what etcd holds, before it is sent.
    size_t annotations = 0;
    for (const auto& [k, v] : w.annotations) annotations += annotation_key_ok(k) ? k.size() + v.size() : kMaxAnnotations + 1;
    if (w.blob.empty() || w.blob.size() > kMaxCiphertext || annotations > kMaxAnnotations ||
        !check_key_id(w.key_id, "stored wrapped key").ok()) {
      return Status::Corruption("the stored KMS-wrapped data key is malformed");
    }
    auto health = status();
    if (!health.ok()) return health.status();
    v2::DecryptRequest req;
    req.set_ciphertext(std::string(w.blob.begin(), w.blob.end()));
    req.set_uid(new_uid());
    req.set_key_id(w.key_id);
    for (const auto& [k, v] : w.annotations) (*req.mutable_annotations())[k] = std::string(v.begin(), v.end());
    v2::DecryptResponse resp;
    grpc::ClientContext ctx;
    deadline(ctx);
    grpc::Status s = stub_->Decrypt(&ctx, req, &resp);
    std::string* plain = resp.mutable_plaintext();
    Result<crypto::SecretBytes> out = Status(EBADMSG, "the KMS plugin decrypted something that is not a data key");
    if (!s.ok()) {
      out = from_grpc(s, "the KMS plugin at " + endpoint_ + " did not decrypt with key " + plugin_text(w.key_id));
    } else if (plain->size() == crypto::kKeySize) {
      crypto::SecretBytes dek(crypto::kKeySize);
      std::copy(plain->begin(), plain->end(), dek.data());
      out = std::move(dek);
    }
    plain->assign(plain->size(), '\0');
    return out;
  }

  Result<std::string> current_key_id() override {
    auto st = status();
    if (!st.ok()) return st.status();
    return st->key_id();
  }

  bool revocable() const override { return true; }

  Status validate() override { return prove_round_trip(*this, "the KMS plugin"); }

 private:
  void deadline(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(timeout_)));
  }

  // Status, healthy and well-formed.
  Result<v2::StatusResponse> status() {
    v2::StatusResponse resp;
    grpc::ClientContext ctx;
    deadline(ctx);
    grpc::Status s = stub_->Status(&ctx, v2::StatusRequest(), &resp);
    if (!s.ok()) return from_grpc(s, "the KMS plugin at " + endpoint_ + " did not answer Status");
    if (resp.version() != "v2" && resp.version() != "v2beta1") {
      return Status(EBADMSG, "the KMS plugin speaks version " + plugin_text(resp.version()) + ", not v2");
    }
    if (resp.healthz() != "ok") return Status(EAGAIN, "the KMS plugin is not healthy: " + plugin_text(resp.healthz()));
    CMKFS_RETURN_IF_ERROR(check_key_id(resp.key_id(), "Status"));
    return resp;
  }

  std::string endpoint_;
  double timeout_;
  std::unique_ptr<v2::KeyManagementService::Stub> stub_;
};

Status check_socket(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    return Status(EAGAIN, "no KMS plugin listens at " + path + " (" + std::strerror(errno) + ")");
  }
  if (!S_ISSOCK(st.st_mode)) return Status::InvalidArgument(path + " is not a socket (links are not followed)");
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) return Status::AccessDenied("the KMS plugin socket " + path + " belongs to another user");
  // Every directory above it the host's: whoever could change one could put their own plugin there.
  Status dirs = check_host_dirs(path, "the KMS plugin socket");
  return dirs.code() == ENOENT ? Status(EAGAIN, dirs.message()) : dirs;
}

}  // namespace

Result<std::string> kms2_socket_path(const std::string& endpoint) {
  constexpr std::string_view kScheme = "kms2://";
  if (endpoint.rfind(kScheme, 0) != 0) return Status::InvalidArgument("a KMS v2 plugin is named kms2:///path/to/plugin.sock");
  std::string path = endpoint.substr(kScheme.size());
  if (path.empty() || path[0] != '/' || path.rfind("/@", 0) == 0) {
    return Status::InvalidArgument("'" + endpoint + "': a KMS v2 plugin is named by the absolute path of its unix socket "
                                   "(kms2:///run/kms/plugin.sock; abstract sockets have no owner and are refused)");
  }
  if (path.size() > 100) return Status::InvalidArgument("the KMS plugin's socket path is too long for a unix socket");
  return path;
}

Result<std::unique_ptr<KeyProvider>> make_kms2_provider(const KekConfig& config, double timeout_seconds) {
  auto path = kms2_socket_path(config.key_identifier);
  if (!path.ok()) return path.status();
  CMKFS_RETURN_IF_ERROR(check_socket(*path));
  return std::unique_ptr<KeyProvider>(new Kms2Provider(config.key_identifier, *path, timeout_seconds));
}

}  // namespace cmkfs::keyclient
