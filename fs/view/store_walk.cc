#include "fs/view/store_walk.h"

#include <fcntl.h>

namespace cmkfs::fs::view {

int walk(Filesystem& fs, const InodeRef& from, std::string_view rel, InodeRef* out) {
  InodeRef cur(&fs, from.rec(), false);
  while (!rel.empty()) {
    size_t slash = rel.find('/');
    std::string_view part = rel.substr(0, slash);
    rel = slash == std::string_view::npos ? std::string_view() : rel.substr(slash + 1);
    if (part.empty() || part == "." || part == "..") continue;
    if (!S_ISDIR(cur.rec().mode)) return ENOTDIR;
    meta::InodeRecord rec;
    if (int err = fs.lookup(cur.ino(), part, &rec); err != 0) return err;
    InodeRef next(&fs, rec, true);
    if (S_ISLNK(rec.mode)) return ELOOP;  // never followed: the view reads what the registry made
    cur = std::move(next);
  }
  *out = std::move(cur);
  return 0;
}

int walk_from_root(Filesystem& fs, std::string_view rel, InodeRef* out) {
  meta::InodeRecord root;
  if (int err = fs.getattr(meta::kRootIno, &root); err != 0) return err;
  return walk(fs, InodeRef(&fs, root, false), rel, out);
}

int list(Filesystem& fs, uint64_t dir, size_t max, std::vector<std::pair<std::string, uint32_t>>* out) {
  out->clear();
  return fs.readdir(dir, 0, [&](std::string_view name, uint64_t, uint32_t type, uint64_t) {
    if (name != "." && name != "..") out->emplace_back(std::string(name), type & S_IFMT);
    return out->size() < max;
  });
}

int read_small(Filesystem& fs, const InodeRef& file, uint64_t max, std::string* out) {
  if (!S_ISREG(file.rec().mode)) return S_ISDIR(file.rec().mode) ? EISDIR : EINVAL;
  if (file.rec().size > max) return EFBIG;
  Handle* h = nullptr;
  if (int err = fs.open(file.ino(), O_RDONLY, &h); err != 0) return err;
  out->assign(file.rec().size, '\0');
  size_t done = 0;
  int err = 0;
  while (done < out->size()) {
    size_t n = 0;
    auto* p = reinterpret_cast<uint8_t*>(out->data()) + done;
    err = fs.read(h, done, crypto::MutableBytes(p, out->size() - done), &n);
    if (err != 0 || n == 0) break;
    done += n;
  }
  fs.release(h);
  out->resize(done);
  return err;
}

}  // namespace cmkfs::fs::view
