#include "fs/admin/fsck.h"

#include <sys/stat.h>

#include <map>
#include <ostream>
#include <set>

#include "crypto/chunk_layout.h"
#include "crypto/base/hex.h"
#include "fs/admin/admin.h"
#include "fs/admin/offline.h"
#include "meta/format.h"

namespace cmkfs::fs {
namespace {

struct Tree {
  std::map<uint64_t, meta::InodeRecord> inodes;
  std::map<uint64_t, uint32_t> names;    // ino -> directory entries naming it
  std::map<uint64_t, uint32_t> subdirs;  // directory -> entries that are directories
  std::set<uint64_t> orphans;
  // What the last mount noted as in flight (crash recovery): files being written, objects to
  // remove, objects being created.
  std::set<uint64_t> writing;
  std::set<Id128> pending, created;
};

std::string inode_name(uint64_t ino) { return "inode " + std::to_string(ino); }

Status load_records(meta::Txn& txn, Tree& t, FsckReport& r) {
  CMKFS_RETURN_IF_ERROR(txn.for_each_inode([&](uint64_t ino, Result<meta::InodeRecord> rec) {
    if (rec.ok()) t.inodes.emplace(ino, std::move(*rec));
    else r.problems.push_back(rec.status().message());
    return true;
  }));
  CMKFS_RETURN_IF_ERROR(txn.for_each_entry([&](uint64_t parent, Result<meta::DirEntry> e) {
    ++r.entries;
    if (!e.ok()) return r.problems.push_back(e.status().message()), true;
    std::string where = "entry " + std::to_string(e->slot) + " of directory " + std::to_string(parent);
    auto dir = t.inodes.find(parent);
    auto child = t.inodes.find(e->ino);
    if (dir == t.inodes.end() || !S_ISDIR(dir->second.mode)) {
      r.problems.push_back(where + ": the directory is missing");
    }
    if (child == t.inodes.end()) return r.problems.push_back(where + ": names missing " + inode_name(e->ino)), true;
    if ((child->second.mode & S_IFMT) != e->type) {
      r.problems.push_back(where + ": type differs from " + inode_name(e->ino));
    }
    ++t.names[e->ino];
    if (S_ISDIR(child->second.mode)) ++t.subdirs[parent];
    return true;
  }));
  auto orphans = txn.orphans();
  if (!orphans.ok()) return orphans.status();
  t.orphans.insert(orphans->begin(), orphans->end());
  auto writing = txn.writing();
  if (!writing.ok()) return writing.status();
  t.writing.insert(writing->begin(), writing->end());
  auto pending = txn.pending_removals();
  if (!pending.ok()) return pending.status();
  t.pending.insert(pending->begin(), pending->end());
  return Status::Ok();
}

// Link counts and reachability: a file's nlink is its number of names, a directory's is 2 plus
// its subdirectories; an inode with no name must be an orphan (or the root).
uint32_t count_of(const std::map<uint64_t, uint32_t>& m, uint64_t k) {
  auto i = m.find(k);
  return i == m.end() ? 0 : i->second;
}

void check_links(const Tree& t, FsckReport& r) {
  if (!t.inodes.contains(meta::kRootIno)) r.problems.push_back("the root directory is missing");
  for (const auto& [ino, rec] : t.inodes) {
    std::string who = inode_name(ino);
    uint32_t names = count_of(t.names, ino);
    bool orphan = t.orphans.contains(ino);
    r.orphans += orphan;
    if (orphan && rec.nlink > 0) {  // the orphans table is not sealed; the record is
      r.problems.push_back(who + ": listed as an orphan but its record has " + std::to_string(rec.nlink) +
                           " links (a forged entry; the next mount drops it and keeps the inode)");
    }
    if (S_ISDIR(rec.mode)) {
      ++r.directories;
      uint32_t want_names = ino == meta::kRootIno || orphan ? 0 : 1;
      uint32_t want_links = orphan ? 0 : 2 + count_of(t.subdirs, ino);
      if (names != want_names) r.problems.push_back(who + ": a directory with " + std::to_string(names) + " names");
      if (rec.nlink != want_links) {
        r.problems.push_back(who + ": link count " + std::to_string(rec.nlink) + ", expected " + std::to_string(want_links));
      }
      continue;
    }
    if (S_ISREG(rec.mode)) ++r.files;
    else if (S_ISLNK(rec.mode)) ++r.symlinks;
    else ++r.others;
    if (names == 0 && !orphan) r.problems.push_back(who + ": unreachable (no name, not an orphan)");
    if (rec.nlink != names) {
      r.problems.push_back(who + ": link count " + std::to_string(rec.nlink) + ", " + std::to_string(names) + " names");
    }
  }
  for (uint64_t ino : t.orphans) {
    if (!t.inodes.contains(ino)) r.problems.push_back("orphan " + inode_name(ino) + " has no record");
  }
}

// Every chunk must authenticate, in an object of the length the size implies.
void check_file(OfflineStore& o, const Tree& t, const crypto::ChunkLayout& layout, const meta::InodeRecord& rec,
                FsckReport& r) {
  std::string who = inode_name(rec.ino);
  auto object = o.store->objects->open(rec.file_id, false);
  if (!object.ok()) {
    if (object.status().code() != ENOENT || rec.size > 0) r.problems.push_back(who + ": " + object.status().message());
    return;
  }
  auto length = (*object)->length();
  meta::InodeRecord checked = rec;
  if (length.ok() && *length != layout.phys_size(rec.size) && t.writing.contains(rec.ino)) {
    // Written when the mount stopped: the next mount makes the file what authenticates.
    auto fc = file_crypto(o.keyring.access(), o.store->super.store_id, rec);
    auto size = fc.ok() ? recoverable_size(fc->chunks(**object, layout), rec.size, *length) : Result<uint64_t>(fc.status());
    if (!size.ok()) return r.problems.push_back(who + ": " + size.status().message());
    r.leftovers.push_back(who + ": written when the mount stopped (saved size " + std::to_string(rec.size) +
                          ", object " + std::to_string(*length) + " bytes): the next mount makes it the " +
                          std::to_string(*size) + " bytes that authenticate");
    checked.size = *size;
  } else if (!length.ok() || *length != layout.phys_size(rec.size)) {
    r.problems.push_back(who + ": object is " + (length.ok() ? std::to_string(*length) : "unreadable") + " bytes, " +
                         std::to_string(layout.phys_size(rec.size)) + " expected for its size");
  }
  Status s = read_plaintext(*o.store, o.keyring, **object, checked, [](crypto::Bytes) {});
  if (!s.ok()) return r.problems.push_back(who + ": " + s.message());
  r.chunks += layout.count(checked.size);
  r.bytes += checked.size;
}

void check_objects(OpenStore& st, const Tree& t, FsckReport& r) {
  std::set<Id128> owned;
  for (const auto& [ino, rec] : t.inodes) {
    if (S_ISREG(rec.mode)) owned.insert(rec.file_id);
  }
  Status s = st.objects->list(
      [&](const Id128& id) {
        if (owned.contains(id)) return;
        if (t.pending.contains(id) || t.created.contains(id)) {
          r.leftovers.push_back("object " + to_hex(id) + (t.pending.contains(id) ? " of a deleted file" : " of a create that never committed") +
                                ": the next mount removes it");
        } else {
          r.problems.push_back("object " + to_hex(id) + " belongs to no file (leaked)");
        }
      },
      [&](const std::string& path) { r.problems.push_back(path + ": not an object of this store"); });
  if (!s.ok() && s.code() != ENOTSUP) r.problems.push_back(s.message());
}

}  // namespace

Result<FsckReport> check_store(OfflineStore& o) {
  OpenStore& st = *o.store;
  auto access = o.keyring.access();
  FsckReport report;
  Tree tree;
  {
    auto txn = st.meta->begin(false, &access.store_keys());
    if (!txn.ok()) return txn.status();
    CMKFS_RETURN_IF_ERROR(load_records(*txn, tree, report));
  }
  if (st.creations) {
    auto created = st.creations->entries();
    if (!created.ok()) return created.status();
    for (const auto& e : *created) tree.created.insert(e.file_id);
  }
  check_links(tree, report);
  crypto::ChunkLayout layout(st.super.chunk_size);
  for (const auto& [ino, rec] : tree.inodes) {
    if (S_ISREG(rec.mode)) check_file(o, tree, layout, rec, report);
  }
  check_objects(st, tree, report);
  return report;
}

int run_fsck(const std::string& store, std::ostream& out, std::ostream& err) {
  int code = kExitOk;
  auto o = open_offline(store, "fsck", err, &code);
  if (!o) return code;
  auto report = check_store(*o);
  if (!report.ok()) {
    err << "cmkfs: " << report.status().message() << "\n";
    return kExitNotAStore;
  }
  const FsckReport& r = *report;
  out << "store " << o->store->paths.root << ": " << r.directories << " directories, " << r.files << " files, "
      << r.symlinks << " symlinks, " << r.others << " others, " << r.entries << " names; " << r.chunks
      << " chunks (" << r.bytes << " bytes) authenticated; " << r.orphans << " orphans\n";
  for (const auto& p : r.problems) out << "problem: " << p << "\n";
  for (const auto& l : r.leftovers) out << "left by a crash: " << l << "\n";
  if (r.problems.empty()) {
    out << (r.leftovers.empty() ? "clean\n" : "clean but for what a crash left, which the next mount repairs\n");
    return kExitOk;
  }
  err << "cmkfs: fsck found " << r.problems.size() << " problem(s) in " << o->store->paths.root << "\n";
  return kExitNotAStore;
}

}  // namespace cmkfs::fs
