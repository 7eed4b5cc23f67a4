// The built-in local KEK: 32 random bytes in a file outside the store (or printed by a program
// the host names), wrapping the DEK with AES-256-GCM. The wrap's AAD names the store, so a wrapped DEK is useless in another store.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "crypto/base/hex.h"
#include "keyclient/host_path.h"
#include "keyclient/keyclient.h"

namespace cmkfs::keyclient {
namespace {

constexpr std::string_view kHeader = "cmkfs-local-key-v1 ";
constexpr std::string_view kAlg = "A256GCM";

// "cmkfs-local-key-v1 <64 hex digits>", or the 64 hex digits alone; `what` names the source.
Result<crypto::SecretBytes> parse_key_text(std::string_view view, const std::string& what) {
  if (view.substr(0, kHeader.size()) == kHeader) view.remove_prefix(kHeader.size());
  if (view.size() < 64) return Status::InvalidArgument(what + " is not a cmkfs key");
  crypto::SecretBytes key(crypto::kKeySize);
  for (size_t i = 0; i < crypto::kKeySize; ++i) {
    auto byte = from_hex(view.substr(2 * i, 2));
    if (!byte) return Status::InvalidArgument(what + " is damaged");
    key.data()[i] = (*byte)[0];
  }
  return key;
}

Result<crypto::SecretBytes> read_key_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return Status(ENOKEY, "local key file " + path + " does not exist");
    return Status(err == EACCES ? EACCES : err, "cannot open local key file " + path + ": " + std::strerror(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument("local key file " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return Status::AccessDenied("local key file " + path + " is accessible by group or others; run: chmod 600 " + path);
  }
  // A key someone else could put in its place would be theirs: the next wrap would hand them the DEK.
  Status owned = check_host_owner(st, path, "local key file");
  if (owned.ok()) owned = check_host_dirs(path, "local key file");
  if (!owned.ok()) {
    ::close(fd);
    return owned;
  }
  crypto::SecretBytes text(kHeader.size() + 64 + 1);
  ssize_t n = ::read(fd, text.data(), text.size());
  ::close(fd);
  std::string_view view(reinterpret_cast<const char*>(text.data()), n > 0 ? size_t(n) : 0);
  if (view.substr(0, kHeader.size()) != kHeader) return Status::InvalidArgument("local key file " + path + " is not a cmkfs key file");
  return parse_key_text(view, "local key file " + path);
}

// The key as a program prints it (like gocryptfs's -extpass): run with /bin/sh -c, stdin from
// /dev/null, its standard output read up to 4 KiB within 10 s; it must exit 0.
Result<crypto::SecretBytes> run_key_command(const std::string& command) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::IOError(errno, "pipe");
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::IOError(errno, "cannot run the local key command");
  }
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(fds[1], 1);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  ::close(fds[1]);
  crypto::SecretBytes out(4096);
  size_t got = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool timed_out = false;
  while (got < out.size()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fds[0], POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      timed_out = true;
      break;
    }
    ssize_t n = ::read(fds[0], out.data() + got, out.size() - got);
    if (n <= 0) break;
    got += size_t(n);
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (timed_out) return Status(ETIMEDOUT, "the local key command did not print a key within 10 s");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status(EACCES, "the local key command failed (exit " +
                              std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) + ")");
  }
  return parse_key_text(std::string_view(reinterpret_cast<const char*>(out.data()), got), "what the local key command printed");
}

std::string local_key_id(const crypto::SecretBytes& kek) {
  auto mac = crypto::hmac_sha256(kek.bytes(), crypto::as_bytes("cmkfs/v1/local-key-id"));
  return "local:" + to_hex(std::span<const uint8_t>(mac.data(), 8));
}

class LocalProvider : public KeyProvider {
 public:
  LocalProvider(std::string path, crypto::SecretBytes kek, const Id128& store_id)
      : path_(std::move(path)), kek_(std::move(kek)), key_id_(local_key_id(kek_)) {
    aad_ = "cmkfs/v1/local-wrap";
    aad_.append(reinterpret_cast<const char*>(store_id.data()), store_id.size());
  }

  Result<WrappedKey> wrap(const crypto::SecretBytes& dek) override {
    WrappedKey w{ProviderKind::kLocal, key_id_, std::string(kAlg), {}, {}};
    w.blob.resize(crypto::kNonceSize + dek.size() + crypto::kTagSize);
    crypto::MutableBytes b(w.blob);
    CMKFS_RETURN_IF_ERROR(crypto::random_bytes(b.first(crypto::kNonceSize)));
    CMKFS_RETURN_IF_ERROR(crypto::gcm_seal(kek_.bytes(), b.first(crypto::kNonceSize), crypto::as_bytes(aad_),
                                           dek.bytes(), b.subspan(crypto::kNonceSize, dek.size()),
                                           b.last(crypto::kTagSize)));
    return w;
  }

  Result<crypto::SecretBytes> unwrap(const WrappedKey& w) override {
    if (w.provider != ProviderKind::kLocal || w.alg != kAlg || w.blob.size() != crypto::kNonceSize + 32 + crypto::kTagSize) {
      return Status::InvalidArgument("the data key was not wrapped by a local key");
    }
    if (w.key_id != key_id_) {
      return Status(EKEYREJECTED, "local key file " + path_ + " is not this store's key (it is " + key_id_ +
                                      ", the store needs " + w.key_id + ")");
    }
    crypto::SecretBytes dek(32);
    crypto::Bytes b(w.blob);
    Status s = crypto::gcm_open(kek_.bytes(), b.first(crypto::kNonceSize), crypto::as_bytes(aad_),
                                b.subspan(crypto::kNonceSize, 32), b.last(crypto::kTagSize), {dek.data(), dek.size()});
    if (!s.ok()) return Status(EKEYREJECTED, "the wrapped data key does not open with local key file " + path_);
    return dek;
  }

  Result<std::string> current_key_id() override { return key_id_; }
  bool revocable() const override { return false; }
  Status validate() override { return Status::Ok(); }

 private:
  std::string path_;
  crypto::SecretBytes kek_;
  std::string key_id_;
  std::string aad_;
};

}  // namespace

Status create_local_key_file(const std::string& path) {
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::filesystem::create_directories(parent, ec);
    if (ec) return Status::IOError(ec.value(), "cannot create " + parent.string() + ": " + ec.message());
  }
  auto kek = crypto::random_key();
  if (!kek.ok()) return kek.status();
  crypto::SecretBytes text(kHeader.size() + 64 + 1);
  std::copy(kHeader.begin(), kHeader.end(), text.data());
  static constexpr char kDigits[] = "0123456789abcdef";
  for (size_t i = 0; i < crypto::kKeySize; ++i) {
    text.data()[kHeader.size() + 2 * i] = kDigits[kek->data()[i] >> 4];
    text.data()[kHeader.size() + 2 * i + 1] = kDigits[kek->data()[i] & 15];
  }
  text.data()[text.size() - 1] = '\n';
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    int err = errno;
    if (err == EEXIST) return Status::Exists("local key file " + path + " already exists; choose another --local-key-file");
    return Status::IOError(err, "cannot create local key file " + path + ": " + std::strerror(err));
  }
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return Status::IOError(err, "cannot write local key file " + path);
  }
  return Status::Ok();
}

Result<std::unique_ptr<KeyProvider>> make_local_provider(const KekConfig& config, const Id128& store_id) {
  bool command = !config.key_command.empty();
  auto kek = command ? run_key_command(config.key_command) : read_key_file(config.key_file);
  if (!kek.ok()) return kek.status();
  std::string source = command ? "from the local key command" : config.key_file;
  return std::unique_ptr<KeyProvider>(new LocalProvider(source, std::move(*kek), store_id));
}

Result<std::unique_ptr<KeyProvider>> make_vault_provider(const KekConfig& config, double timeout_seconds);
Result<std::unique_ptr<KeyProvider>> make_pkcs11_provider(const KekConfig& config);
Result<std::unique_ptr<KeyProvider>> make_kms2_provider(const KekConfig& config, double timeout_seconds);

Result<std::unique_ptr<KeyProvider>> make_provider(const KekConfig& config, const Id128& store_id,
                                                   double timeout_seconds) {
  switch (config.provider) {
    case ProviderKind::kLocal: return make_local_provider(config, store_id);
    case ProviderKind::kVault: return make_vault_provider(config, timeout_seconds);
    case ProviderKind::kPkcs11: return make_pkcs11_provider(config);
    case ProviderKind::kKms2: return make_kms2_provider(config, timeout_seconds);
  }
  return Status::InvalidArgument("unknown key provider");
}

}  // namespace cmkfs::keyclient
