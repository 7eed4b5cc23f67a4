// Status and Result<T>: errors as values, shared by every cmkfs library.
//
// A Status carries an errno-compatible code (0 means success) and a message meant for a log line
// or a user. The code is what a FUSE reply uses; the message never contains key material.
#pragma once

#include <cassert>
#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace cmkfs {

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(int code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status NotFound(std::string m) { return {ENOENT, std::move(m)}; }
  static Status Exists(std::string m) { return {EEXIST, std::move(m)}; }
  static Status Corruption(std::string m) { return {EIO, std::move(m)}; }
  static Status IOError(int err, std::string m) { return {err ? err : EIO, std::move(m)}; }
  static Status InvalidArgument(std::string m) { return {EINVAL, std::move(m)}; }
  static Status AccessDenied(std::string m) { return {EACCES, std::move(m)}; }
  static Status NoSpace(std::string m) { return {ENOSPC, std::move(m)}; }
  static Status Unavailable(std::string m) { return {EAGAIN, std::move(m)}; }

  bool ok() const { return code_ == 0; }
  int code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  int code_ = 0;
  std::string message_;
};

// Either a value or a non-ok Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status s) : v_(std::move(s)) {      // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "a Result holding a Status must hold an error");
    // Without asserts, a success here would read as neither a value nor an error: callers that
    // pass status() on would report success for what failed. An error it is.
    if (std::get<Status>(v_).ok()) v_ = Status(EIO, "internal error: a failure without a reason");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace cmkfs

#define CMKFS_RETURN_IF_ERROR(expr)              \
  do {                                           \
    if (::cmkfs::Status s_ = (expr); !s_.ok()) { \
      return s_;                                 \
    }                                            \
  } while (0)
