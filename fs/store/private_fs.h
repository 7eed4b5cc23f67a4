// Internal to fs/store: opening what cmkfs trusts on the local filesystem (a store's directories
// and files, the host's bindings) without following a link anyone could have planted, and only
// when the caller owns it and nobody else may write it. Every check failure says what to run.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "crypto/base/fd.h"
#include "crypto/base/status.h"

namespace cmkfs::fs {

// The caller's own, and not writable (dir) or readable (file, when `secret`) by others: EACCES
// with the chown/chmod to run otherwise. `shown` names it in the message.
Status check_private(const struct stat& st, const std::string& shown, bool dir, bool secret);

// Opens directory `name` under `at` (AT_FDCWD: a path) with O_NOFOLLOW, checked as above.
Result<Fd> open_private_dir(int at, const std::string& name, const std::string& shown);
// Opens regular file `name` under `at` with O_NOFOLLOW and `flags` (O_CREAT creates it 0600):
// refused if it is not a regular file with one link, owned by the caller. `opened`, if given,
// receives the file's stat as checked. It is opened O_NONBLOCK, which stays only if `flags` has it.
Result<Fd> open_private_file(int at, const std::string& name, int flags, const std::string& shown,
                             struct stat* opened = nullptr);

// A directory of this host's own (0700, made under TMPDIR or /tmp) whose entries link to open
// descriptors (/proc/thread-self/fd/N), for a library that opens files only by name (LMDB): through it,
// it opens exactly the files checked, whatever the store's names point at meanwhile. The
// directory is held open and named by its descriptor too (path()), so a TMPDIR that others may
// write cannot have it renamed away and replaced. Removed with the object, by which time the
// library has opened what it needs.
class LinkDirectory {
 public:
  // (name, descriptor) pairs.
  static Result<LinkDirectory> make(const std::vector<std::pair<std::string, int>>& links);
  LinkDirectory(LinkDirectory&& o) noexcept
      : dir_(std::move(o.dir_)), made_(std::exchange(o.made_, "")), path_(std::move(o.path_)), names_(std::move(o.names_)) {}
  LinkDirectory& operator=(LinkDirectory&&) = delete;
  ~LinkDirectory();
  // /proc/thread-self/fd/N: the directory made, whatever its name in TMPDIR names now. For the
  // thread that made it only.
  const std::string& path() const { return path_; }

 private:
  LinkDirectory() = default;
  Fd dir_;
  std::string made_;  // its name in TMPDIR, removed at the end if still there and empty
  std::string path_;
  std::vector<std::string> names_;
};

// The text of a file holding a secret (a password, an access key) at `path`: opened as above,
// unreadable by others, at most `max` bytes (EFBIG past that). The contents are never in an error.
Result<std::string> read_secret_file(const std::string& path, size_t max = 4096);

}  // namespace cmkfs::fs
