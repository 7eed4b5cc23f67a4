#include "fs/admin/fsck.h"

#include <sys/stat.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "crypto/chunk_layout.h"
#include "crypto/base/hex.h"
#include "crypto/base/id128.h"
#include "crypto/base/printable.h"
#include "fs/admin/admin.h"
#include "fs/admin/offline.h"
#include "meta/format.h"

namespace cmkfs::fs {
namespace {

// One node per inode record, holding what the directory entries say of it: each entry then
// costs one lookup of its child (its directory's is kept from the entry before). Hash tables, not
// trees: at 100,000 files the trees' cache misses were most of the walk's time, and with a map
// for each count, those maps' lookups were a fifth of it.
struct Node {
  meta::InodeRecord rec;
  uint32_t names = 0;    // directory entries naming it
  uint32_t subdirs = 0;  // a directory's entries that are directories
  uint64_t first_parent = 0;  // its first name, (first_parent, first_name), when names > 0
  std::string first_name;
};

struct Tree {
  std::unordered_map<uint64_t, Node> inodes;
  std::vector<const Node*> by_ino;  // every record, ascending: the report's order
  // Names of inodes that have no record (each a problem already), for the report's paths.
  std::unordered_map<uint64_t, std::pair<uint64_t, std::string>> unrecorded_names;
  std::set<uint64_t> orphans;
  // What the last mount noted as in flight (crash recovery): files being written, objects to
  // remove, objects being created.
  std::set<uint64_t> writing;
  std::set<Id128> pending, created;
  // Records that do not open, and names of inodes with none: an object no record names may then
  // be one of theirs, which a record restored from a backup would need.
  size_t lost_records = 0;
};

std::string inode_name(uint64_t ino) { return "inode " + std::to_string(ino); }

void add(FsckReport& r, uint64_t ino, std::string text) {
  FsckProblem p;
  p.ino = ino;
  p.text = std::move(text);
  r.problems.push_back(std::move(p));
}

// The inode records, each handed to `each` as it loads (a node's address stays put).
Status load_inodes(meta::Txn& txn, Tree& t, FsckReport& r, const std::function<void(const meta::InodeRecord&)>& each) {
  CMKFS_RETURN_IF_ERROR(txn.for_each_inode([&](uint64_t ino, Result<meta::InodeRecord> rec) {
    if (!rec.ok()) return ++t.lost_records, add(r, ino, rec.status().message()), true;
    auto [it, fresh] = t.inodes.try_emplace(ino);
    // Only a hostile database lists a key twice; the first record stays (a checking thread may
    // be reading it).
    if (!fresh) return add(r, ino, inode_name(ino) + ": listed twice by the metadata database"), true;
    it->second.rec = std::move(*rec);
    each(it->second.rec);
    return true;
  }));
  t.by_ino.reserve(t.inodes.size());
  for (const auto& [ino, node] : t.inodes) t.by_ino.push_back(&node);
  std::sort(t.by_ino.begin(), t.by_ino.end(), [](const Node* a, const Node* b) { return a->rec.ino < b->rec.ino; });
  return Status::Ok();
}

// The names: directory entries, orphans and objects to remove. Runs while the files are checked,
// so it changes only what checking a file does not read (a node's counts and first name).
Status load_names(meta::Txn& txn, Tree& t, FsckReport& r) {
  // Entries come grouped by directory: its node is looked up once per group.
  uint64_t dir_ino = 0;
  Node* dir = nullptr;
  CMKFS_RETURN_IF_ERROR(txn.for_each_entry([&](uint64_t parent, Result<meta::DirEntry> e) {
    ++r.entries;
    if (!e.ok()) return ++t.lost_records, add(r, parent, e.status().message()), true;
    // Made only for a problem: built for every entry, it was a tenth of fsck's time.
    auto where = [&] { return "entry " + std::to_string(e->slot) + " of directory " + std::to_string(parent); };
    if (dir == nullptr || dir_ino != parent) {
      auto it = t.inodes.find(parent);
      dir = it == t.inodes.end() ? nullptr : &it->second;
      dir_ino = parent;
    }
    if (dir == nullptr || !S_ISDIR(dir->rec.mode)) add(r, parent, where() + ": the directory is missing");
    auto child = t.inodes.find(e->ino);
    if (child == t.inodes.end()) {
      ++t.lost_records;
      t.unrecorded_names.try_emplace(e->ino, parent, std::move(e->name));
      return add(r, parent, where() + ": names missing " + inode_name(e->ino)), true;
    }
    Node& c = child->second;
    if ((c.rec.mode & S_IFMT) != e->type) add(r, e->ino, where() + ": type differs from " + inode_name(e->ino));
    if (c.names++ == 0) c.first_parent = parent, c.first_name = std::move(e->name);
    if (S_ISDIR(c.rec.mode) && dir != nullptr) ++dir->subdirs;
    return true;
  }));
  auto orphans = txn.orphans();
  if (!orphans.ok()) return orphans.status();
  t.orphans.insert(orphans->begin(), orphans->end());
  auto pending = txn.pending_removals();
  if (!pending.ok()) return pending.status();
  t.pending.insert(pending->begin(), pending->end());
  return Status::Ok();
}

// Link counts and reachability: a file's nlink is its number of names, a directory's is 2 plus
// its subdirectories; an inode with no name must be an orphan (or the root).
void check_links(const Tree& t, FsckReport& r) {
  if (!t.inodes.contains(meta::kRootIno)) add(r, 0, "the root directory is missing");
  for (const Node* node : t.by_ino) {
    const meta::InodeRecord& rec = node->rec;
    uint64_t ino = rec.ino;
    std::string who = inode_name(ino);
    uint32_t names = node->names;
    bool orphan = t.orphans.contains(ino);
    r.orphans += orphan;
    if (orphan && rec.nlink > 0) {  // the orphans table is not sealed; the record is
      add(r, ino, who + ": listed as an orphan but its record has " + std::to_string(rec.nlink) +
                           " links (a forged entry; the next mount drops it and keeps the inode)");
    }
    if (S_ISDIR(rec.mode)) {
      ++r.directories;
      uint32_t want_names = ino == meta::kRootIno || orphan ? 0 : 1;
      uint32_t want_links = orphan ? 0 : 2 + node->subdirs;
      if (names != want_names) add(r, ino, who + ": a directory with " + std::to_string(names) + " names");
      if (rec.nlink != want_links) {
        add(r, ino, who + ": link count " + std::to_string(rec.nlink) + ", expected " + std::to_string(want_links));
      }
      continue;
    }
    if (S_ISREG(rec.mode)) ++r.files;
    else if (S_ISLNK(rec.mode)) ++r.symlinks;
    else ++r.others;
    if (names == 0 && !orphan) add(r, ino, who + ": unreachable (no name, not an orphan)");
    if (rec.nlink != names) {
      add(r, ino, who + ": link count " + std::to_string(rec.nlink) + ", " + std::to_string(names) + " names");
    }
  }
  for (uint64_t ino : t.orphans) {
    if (!t.inodes.contains(ino)) add(r, ino, "orphan " + inode_name(ino) + " has no record");
  }
}

// Every chunk must authenticate, in an object of the length the size implies.
void check_file(OfflineStore& o, const std::set<uint64_t>& writing, const crypto::ChunkLayout& layout,
                const meta::InodeRecord& rec, FsckReport& r) {
  std::string who = inode_name(rec.ino);
  auto object = o.store->objects->open(rec.file_id, false);
  if (!object.ok()) {
    if (object.status().code() != ENOENT || rec.size > 0) add(r, rec.ino, who + ": " + object.status().message());
    return;
  }
  auto length = (*object)->length();
  meta::InodeRecord checked = rec;
  if (length.ok() && *length != layout.phys_size(rec.size) && writing.contains(rec.ino)) {
    // Written when the mount stopped: the next mount makes the file what authenticates.
    auto fc = file_crypto(o.keyring.access(), o.store->super.store_id, rec);
    auto size = fc.ok() ? recoverable_size(fc->chunks(**object, layout), rec.size, *length) : Result<uint64_t>(fc.status());
    if (!size.ok()) return add(r, rec.ino, who + ": " + size.status().message());
    r.leftovers.push_back(who + ": written when the mount stopped (saved size " + std::to_string(rec.size) +
                          ", object " + std::to_string(*length) + " bytes): the next mount makes it the " +
                          std::to_string(*size) + " bytes that authenticate");
    checked.size = *size;
  } else if (!length.ok() || *length != layout.phys_size(rec.size)) {
    add(r, rec.ino, who + ": object is " + (length.ok() ? std::to_string(*length) : "unreadable") + " bytes, " +
                        std::to_string(layout.phys_size(rec.size)) + " expected for its size");
    if (length.ok() && *length > layout.phys_size(rec.size)) {  // bytes past the size: nothing reads them
      r.problems.back().fix = FsckProblem::Fix::kTrimObject;
      r.problems.back().object = rec.file_id;
      r.problems.back().length = layout.phys_size(rec.size);
    }
  }
  Status s = read_plaintext(*o.store, o.keyring, **object, checked, [](crypto::Bytes) {});
  if (!s.ok()) {
    if (!r.problems.empty() && r.problems.back().fix == FsckProblem::Fix::kTrimObject && r.problems.back().ino == rec.ino) {
      r.problems.back().fix = FsckProblem::Fix::kNone;  // damaged within its size too: left alone
    }
    return add(r, rec.ino, who + ": " + s.message());
  }
  r.chunks += layout.count(checked.size);
  r.bytes += checked.size;
}

// Every regular file's chunks, on every core, while the metadata is still being walked: the
// files come in blocks (64 files, or fewer that hold 8 MiB: a registry's few large blobs among
// many small links), each claimed by whichever thread is free, and each block's findings are
// merged in the order of the blocks, so the report reads as a single thread's would.
class FileChecker {
 public:
  // `writing` (what the last mount was writing) is read by the checks: loaded before any add().
  FileChecker(OfflineStore& o, const std::set<uint64_t>& writing, const FsckProgress& progress)
      : o_(o), writing_(writing), progress_(progress), layout_(o.store->super.chunk_size) {
    try {
      for (unsigned i = 0; i < std::max(1u, std::thread::hardware_concurrency()); ++i) threads_.emplace_back([this] { work(); });
    } catch (...) {  // no thread to start: the ones started must end before the error goes up
      stop();
      throw;
    }
  }
  ~FileChecker() { stop(); }
  FileChecker(const FileChecker&) = delete;
  FileChecker& operator=(const FileChecker&) = delete;

  // REQUIRES: `rec` outlives the checker.
  void add(const meta::InodeRecord& rec) {
    if (!S_ISREG(rec.mode)) return;
    if (filling_.files.size() == kBlockFiles || filling_.bytes >= kBlockBytes) hand_over();
    filling_.files.push_back(&rec), filling_.bytes += rec.size;
  }

  // Waits for every file added and adds what they found to `r`.
  void finish(FsckReport& r) {
    hand_over();
    {
      std::lock_guard<std::mutex> g(mu_);
      all_added_ = true;
    }
    stop();
    r.threads = static_cast<unsigned>(std::max<size_t>(1, used_.size()));
    for (auto& b : blocks_) {
      r.chunks += b.report.chunks, r.bytes += b.report.bytes;
      std::move(b.report.problems.begin(), b.report.problems.end(), std::back_inserter(r.problems));
      std::move(b.report.leftovers.begin(), b.report.leftovers.end(), std::back_inserter(r.leftovers));
    }
  }

 private:
  static constexpr size_t kBlockFiles = 64;
  static constexpr uint64_t kBlockBytes = 8 << 20;
  struct Block {
    std::vector<const meta::InodeRecord*> files;
    uint64_t bytes = 0;
    FsckReport report;
  };

  void hand_over() {
    if (filling_.files.empty()) return;
    {
      std::lock_guard<std::mutex> g(mu_);
      total_bytes_ += filling_.bytes, total_files_ += filling_.files.size();
      blocks_.push_back(std::move(filling_));
    }
    filling_ = Block{};
    cv_.notify_one();
  }

  void stop() {
    {
      std::lock_guard<std::mutex> g(mu_);
      done_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return next_ < blocks_.size() || done_; });
      if (next_ == blocks_.size()) return;
      Block* b = &blocks_[next_++];  // a deque's elements stay put as it grows
      lock.unlock();
      for (const meta::InodeRecord* rec : b->files) check_file(o_, writing_, layout_, *rec, b->report);
      lock.lock();
      used_.insert(std::this_thread::get_id());
      done_bytes_ += b->bytes, done_files_ += b->files.size();
      // Until every file is added the total is not known: one more, so no line reads as the last.
      if (progress_) progress_(done_bytes_, total_bytes_, done_files_, total_files_ + (all_added_ ? 0 : 1));
    }
  }

  OfflineStore& o_;
  const std::set<uint64_t>& writing_;
  const FsckProgress& progress_;
  const crypto::ChunkLayout layout_;
  Block filling_;  // the adding thread's

  std::mutex mu_;  // guards what follows
  std::condition_variable cv_;
  std::deque<Block> blocks_;
  size_t next_ = 0;  // the next block to check
  bool done_ = false;
  bool all_added_ = false;
  uint64_t total_bytes_ = 0, total_files_ = 0, done_bytes_ = 0, done_files_ = 0;
  std::set<std::thread::id> used_;

  std::vector<std::thread> threads_;  // last: they start once the rest is ready
};

// The backing store's objects, listed on a thread of their own (listed after the metadata was
// walked, they were a tenth of fsck's time). Names that are not objects are kept with their
// place in the listing.
struct ObjectListing {
  Status status;
  std::vector<Id128> ids;
  std::vector<std::pair<size_t, std::string>> strays;  // (ids listed before it, name)
  uint64_t more_strays = 0;                            // past kMaxStrays, counted only
};

// Names in the backing store that are no object are the store's server's to choose: as many
// as it lists, as long and with whatever bytes. A report names the first ones.
constexpr size_t kMaxStrays = 1000;
constexpr size_t kMaxStrayName = 256;

// `name` as a report keeps it: at most kMaxStrayName bytes (printed escaped, as every name is).
std::string shown_name(const std::string& name) {
  return name.size() > kMaxStrayName ? name.substr(0, kMaxStrayName) + "..." : name;
}

ObjectListing list_objects(ObjectStore& objects) {
  ObjectListing l;
  l.status = objects.list([&](const Id128& id) { l.ids.push_back(id); },
                          [&](const std::string& path) {
                            if (l.strays.size() < kMaxStrays) l.strays.emplace_back(l.ids.size(), shown_name(path));
                            else ++l.more_strays;
                          });
  return l;
}

void check_objects(const ObjectListing& l, const Tree& t, FsckReport& r) {
  std::unordered_set<Id128, Id128Hash> owned;  // ids from sealed records: drawn by cmkfs
  owned.reserve(t.inodes.size());
  for (const auto& [ino, node] : t.inodes) {
    if (S_ISREG(node.rec.mode)) owned.insert(node.rec.file_id);
  }
  auto stray = l.strays.begin();
  auto strays_listed_before = [&](size_t i) {
    for (; stray != l.strays.end() && stray->first <= i; ++stray) add(r, 0, stray->second + ": not an object of this store");
  };
  for (size_t i = 0; i < l.ids.size(); ++i) {
    strays_listed_before(i);
    const Id128& id = l.ids[i];
    if (owned.contains(id)) continue;
    if (t.pending.contains(id) || t.created.contains(id)) {
      r.leftovers.push_back("object " + to_hex(id) + (t.pending.contains(id) ? " of a deleted file" : " of a create that never committed") +
                            ": the next mount removes it");
    } else {
      if (t.lost_records > 0) {  // --repair would destroy what a restored record needs
        add(r, 0, "object " + to_hex(id) + " belongs to no file whose record opens: kept, since records of the store "
                      "are damaged or missing");
        continue;
      }
      add(r, 0, "object " + to_hex(id) + " belongs to no file (leaked)");
      r.problems.back().fix = FsckProblem::Fix::kRemoveObject;
      r.problems.back().object = id;
    }
  }
  strays_listed_before(l.ids.size());
  if (l.more_strays > 0) add(r, 0, std::to_string(l.more_strays) + " more names that are not objects of this store");
  if (!l.status.ok() && l.status.code() != ENOTSUP) add(r, 0, l.status.message());
}

// An inode's first name as (directory, name), or null when it has none.
std::pair<uint64_t, const std::string*> first_name_of(const Tree& t, uint64_t ino) {
  if (auto it = t.inodes.find(ino); it != t.inodes.end()) {
    if (it->second.names == 0) return {0, nullptr};
    return {it->second.first_parent, &it->second.first_name};
  }
  auto it = t.unrecorded_names.find(ino);
  if (it == t.unrecorded_names.end()) return {0, nullptr};
  return {it->second.first, &it->second.second};
}

// The path of an inode from its first name up ("" when it has none: an orphan).
std::string path_of(const Tree& t, uint64_t ino) {
  std::vector<const std::string*> parts;
  for (int depth = 0; ino != meta::kRootIno && depth < 4096; ++depth) {
    auto [parent, name] = first_name_of(t, ino);
    if (name == nullptr) return "";
    parts.push_back(name);
    ino = parent;
  }
  if (ino != meta::kRootIno) return "";
  std::string path;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) path += "/" + **it;
  return path.empty() ? "/" : path;
}

// Inside a registry's layout: the blob a path is part of, or the repository.
std::string registry_context(const std::string& path, const std::map<std::string, std::set<std::string>>& users) {
  constexpr std::string_view kBlobs = "docker/registry/v2/blobs/sha256/", kRepos = "docker/registry/v2/repositories/";
  if (size_t b = path.find(kBlobs); b != std::string::npos) {
    std::string rest = path.substr(b + kBlobs.size());  // xx/<hex>/data
    size_t slash = rest.find('/');
    std::string hex = slash == std::string::npos ? "" : rest.substr(slash + 1, 64);
    if (hex.size() != 64) return "";
    std::string text = "blob sha256:" + hex;
    auto u = users.find(hex);
    if (u != users.end()) {
      std::string names;
      for (const auto& n : u->second) names += (names.empty() ? "" : ", ") + n;
      text += " (repository " + names + ")";
    }
    return text;
  }
  if (size_t r = path.find(kRepos); r != std::string::npos) {
    std::string repo, rest = path.substr(r + kRepos.size());
    for (size_t pos = 0; pos < rest.size();) {
      size_t slash = rest.find('/', pos);
      std::string part = rest.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
      if (part.empty() || part[0] == '_') break;
      repo += (repo.empty() ? "" : "/") + part;
      pos = slash == std::string::npos ? rest.size() : slash + 1;
    }
    return repo.empty() ? "" : "repository " + repo;
  }
  return "";
}

// Names each problem's inode by its path, and inside a registry by its blob and repository.
void describe(const Tree& t, FsckReport& r) {
  if (r.problems.empty()) return;
  // Which repositories link each blob: .../repositories/<repo>/_layers/sha256/<hex> and
  // .../_manifests/revisions/sha256/<hex>.
  std::map<std::string, std::set<std::string>> users;
  for (const auto& [ino, node] : t.inodes) {
    if (!S_ISDIR(node.rec.mode) || node.names == 0 || node.first_name.size() != 64) continue;
    std::string path = path_of(t, ino);
    for (std::string_view kind : {"/_layers/sha256/", "/_manifests/revisions/sha256/"}) {
      size_t k = path.rfind(kind);
      if (k == std::string::npos || k + kind.size() + 64 != path.size()) continue;
      std::string repo = registry_context(path.substr(0, k) + "/", {});
      if (repo.rfind("repository ", 0) == 0) users[node.first_name].insert(repo.substr(11));
    }
  }
  for (auto& p : r.problems) {
    if (p.ino == 0) continue;
    p.path = path_of(t, p.ino);
    p.registry = registry_context(p.path, users);
  }
}

}  // namespace

Result<FsckReport> check_store(OfflineStore& o, const FsckProgress& progress) {
  OpenStore& st = *o.store;
  auto access = o.keyring.access();
  FsckReport report;
  Tree tree;
  ObjectListing listing;
  std::jthread lister;
  auto txn = st.meta->begin(false, &access.store_keys());
  if (!txn.ok()) return txn.status();
  auto writing = txn->writing();
  if (!writing.ok()) return writing.status();
  tree.writing.insert(writing->begin(), writing->end());
  auto unauthentic = txn->unauthentic_recovery_notes(/*remove=*/false);
  if (!unauthentic.ok()) return unauthentic.status();
  if (*unauthentic > 0) {
    add(report, 0, std::to_string(*unauthentic) + " crash-recovery notes do not authenticate (tampered, or sealed under a "
                   "retired data key): a mount ignores and removes them");
    report.problems.back().fix = FsckProblem::Fix::kDropNotes;
  }
  // The files are checked on every core as their records load, and while the names load.
  FileChecker files(o, tree.writing, progress);
  CMKFS_RETURN_IF_ERROR(load_inodes(*txn, tree, report, [&](const meta::InodeRecord& rec) { files.add(rec); }));
  // Listed while the names load and the files are checked; started only now because an error
  // returns once the listing ends, which on a bucket of millions of objects takes minutes.
  lister = std::jthread([&] { listing = list_objects(*st.objects); });
  CMKFS_RETURN_IF_ERROR(load_names(*txn, tree, report));
  if (st.creations) {
    size_t forged = 0;
    auto created = st.creations->entries(access.store_keys().name, &forged);
    if (!created.ok()) return created.status();
    for (const auto& e : *created) tree.created.insert(e.file_id);
    if (forged > 0) {
      add(report, 0, std::to_string(forged) + " notes of the creation log do not authenticate (tampered?): a mount "
                     "ignores them and empties the log");
      report.problems.back().fix = FsckProblem::Fix::kDropNotes;
    }
  }
  check_links(tree, report);
  files.finish(report);
  lister.join();
  check_objects(listing, tree, report);
  describe(tree, report);
  return report;
}

namespace {

// Progress on a terminal, at most four times a second: bytes and files checked, rate, time left.
class ProgressLine {
 public:
  explicit ProgressLine(std::ostream& err) : err_(err), tty_(::isatty(2) == 1) {}
  ~ProgressLine() {
    if (shown_) err_ << "\r" << std::string(width_, ' ') << "\r" << std::flush;
  }
  void operator()(uint64_t bytes, uint64_t total, uint64_t files, uint64_t total_files) {
    if (!tty_) return;
    auto now = std::chrono::steady_clock::now();
    if (shown_ && now - last_ < std::chrono::milliseconds(250) && files != total_files) return;
    last_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    double rate = secs > 0 ? bytes / secs : 0;
    char line[160];
    int n = std::snprintf(line, sizeof line, "checked %llu/%llu files, %.0f/%.0f MB, %.0f MB/s, %.0f s left",
                          static_cast<unsigned long long>(files), static_cast<unsigned long long>(total_files),
                          bytes / 1e6, total / 1e6, rate / 1e6, rate > 0 ? (total - bytes) / rate : 0.0);
    width_ = std::max(width_, static_cast<size_t>(std::max(n, 0)));
    err_ << "\r" << line << std::flush;
    shown_ = true;
  }

 private:
  std::ostream& err_;
  bool tty_;
  bool shown_ = false;
  size_t width_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_;
};

nlohmann::json to_json(const FsckReport& r, const std::string& root) {
  nlohmann::json problems = nlohmann::json::array();
  for (const auto& p : r.problems) {
    nlohmann::json j = {{"message", p.text}};
    if (p.ino) j["inode"] = p.ino;
    if (!p.path.empty()) j["path"] = p.path;
    if (!p.registry.empty()) j["registry"] = p.registry;
    j["repairable"] = p.fix != FsckProblem::Fix::kNone;
    problems.push_back(j);
  }
  return {{"store", root}, {"directories", r.directories}, {"files", r.files}, {"symlinks", r.symlinks},
          {"others", r.others}, {"names", r.entries}, {"chunks", r.chunks}, {"bytes", r.bytes},
          {"orphans", r.orphans}, {"problems", problems}, {"leftByACrash", r.leftovers},
          {"clean", r.problems.empty()}};
}

// What --repair may touch: leaked objects go, objects longer than their file are cut back, and
// what a crash left (orphans, objects of deleted files, files being written) is repaired as the
// next mount would. Authenticated data is never changed.
Status repair(OfflineStore& o, const FsckReport& r, std::ostream& out) {
  Filesystem fs(*o.store, o.keyring);  // its start() is the mount's own recovery
  CMKFS_RETURN_IF_ERROR(fs.start());
  CMKFS_RETURN_IF_ERROR(fs.shutdown());
  if (r.orphans || !r.leftovers.empty()) out << "repaired: what a crash left (as a mount would)\n";
  for (const auto& p : r.problems) {
    if (p.fix == FsckProblem::Fix::kRemoveObject) {
      CMKFS_RETURN_IF_ERROR(o.store->objects->remove(p.object));
      out << "repaired: removed leaked object " << to_hex(p.object) << "\n";
    } else if (p.fix == FsckProblem::Fix::kDropNotes) {
      out << "repaired: crash-recovery notes that do not authenticate removed (as a mount would)\n";
    } else if (p.fix == FsckProblem::Fix::kTrimObject) {
      auto object = o.store->objects->open(p.object, false);
      if (!object.ok()) return object.status();
      CMKFS_RETURN_IF_ERROR((*object)->truncate(p.length));
      CMKFS_RETURN_IF_ERROR((*object)->sync());
      out << "repaired: " << inode_name(p.ino) << ": object cut back to " << p.length << " bytes\n";
    }
  }
  return Status::Ok();
}

}  // namespace

int run_fsck(const std::string& store, const FsckOptions& opts, std::ostream& out, std::ostream& err) {
  int code = kExitOk;
  auto o = open_offline(store, "fsck", err, &code, /*writable=*/opts.repair);
  if (!o) return code;
  auto started = std::chrono::steady_clock::now();
  auto report = [&] {
    ProgressLine line(err);
    return check_store(*o, std::ref(line));
  }();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (report.ok() && opts.repair) {
    bool any = report->orphans || !report->leftovers.empty() ||
               std::any_of(report->problems.begin(), report->problems.end(),
                           [](const FsckProblem& p) { return p.fix != FsckProblem::Fix::kNone; });
    if (any) {
      Status s = repair(*o, *report, opts.json ? err : out);
      if (!s.ok()) return err << "cmkfs: repair failed: " << s.message() << "\n", kExitError;
      ProgressLine line(err);
      report = check_store(*o, std::ref(line));  // what is left
    }
  }
  if (!report.ok()) {
    err << "cmkfs: " << printable(report.status().message()) << "\n";
    return kExitNotAStore;
  }
  const FsckReport& r = *report;
  if (opts.json) {
    auto j = to_json(r, o->store->paths.root);
    j["seconds"] = seconds;
    out << j.dump(2, ' ', /*ensure_ascii=*/true, nlohmann::json::error_handler_t::replace) << "\n";
    return r.problems.empty() ? kExitOk : kExitNotAStore;
  }
  out << "store " << o->store->paths.root << ": " << r.directories << " directories, " << r.files << " files, "
      << r.symlinks << " symlinks, " << r.others << " others, " << r.entries << " names; " << r.chunks
      << " chunks (" << r.bytes << " bytes) authenticated; " << r.orphans << " orphans\n";
  char rate[128];
  std::snprintf(rate, sizeof rate, "checked in %.2f s: %.0f MB/s, %.0f files/s, on %u threads\n", seconds,
                seconds > 0 ? r.bytes / seconds / 1e6 : 0.0, seconds > 0 ? r.files / seconds : 0.0,
                r.threads);
  out << rate;
  // Names in the store are any mount user's: shown escaped.
  for (const auto& p : r.problems) {
    out << "problem: " << printable(p.text);
    if (!p.path.empty()) out << "; path " << printable(p.path);
    if (!p.registry.empty()) out << "; " << printable(p.registry);
    if (p.fix != FsckProblem::Fix::kNone) out << " (fsck --repair fixes this)";
    out << "\n";
  }
  for (const auto& l : r.leftovers) out << "left by a crash: " << printable(l) << "\n";
  if (r.problems.empty()) {
    out << (r.leftovers.empty() ? "clean\n" : "clean but for what a crash left, which the next mount repairs\n");
    return kExitOk;
  }
  err << "cmkfs: fsck found " << r.problems.size() << " problem(s) in " << o->store->paths.root << "\n";
  return kExitNotAStore;
}

}  // namespace cmkfs::fs
