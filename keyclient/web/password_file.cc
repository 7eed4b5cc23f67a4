#include "keyclient/web/password_file.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <termios.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "crypto/password.h"

namespace cmkfs::web {
namespace {

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

std::string read_password(const std::string& from_file) {
  std::string password;
  if (!from_file.empty()) return first_line(from_file);
  if (::isatty(0)) {
    termios old{};
    ::tcgetattr(0, &old);
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    std::cerr << "New console password: ";
    ::tcsetattr(0, TCSANOW, &quiet);
    std::getline(std::cin, password);
    ::tcsetattr(0, TCSANOW, &old);
    std::cerr << "\n";
    return password;
  }
  std::getline(std::cin, password);
  return password;
}

}  // namespace

Status set_password_file(const std::string& path, const std::string& from_file) {
  std::string password = read_password(from_file);
  if (password.size() < 12) return Status::InvalidArgument("the password must have at least 12 characters");
  auto hash = crypto::hash_password(password);
  OPENSSL_cleanse(password.data(), password.size());
  if (!hash.ok()) return hash.status();
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  std::string tmp = path + ".tmp", line = *hash + "\n";
  // A new file, never one left behind, whose mode (or owner) would be kept.
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError(errno, "cannot write " + tmp);
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return Status::IOError(errno, "cannot write " + path);
  return Status::Ok();
}

bool has_password_file(const std::string& path) { return !first_line(path).empty(); }

bool check_password_file(const std::string& path, const std::string& password) {
  std::string hash = first_line(path);
  return !hash.empty() && crypto::verify_password(password, hash);
}

}  // namespace cmkfs::web
