#include "fs/store/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "crypto/base/hex.h"
#include "fs/store/private_fs.h"
#include "fs/store/s3_object_store.h"

namespace cmkfs::fs {

namespace stdfs = std::filesystem;

int exit_code_for(const Status& s) {
  switch (s.code()) {
    case 0: return kExitOk;
    case EBUSY: return kExitBusy;
    case ENOKEY: case EKEYREJECTED: case EKEYREVOKED: case EACCES: case EAGAIN: case ETIMEDOUT: case EBADMSG:
      return kExitKey;
    case ENOTSUP: return kExitNotAStore;
    case EUCLEAN: return kExitKey;  // the store disagrees with the host's binding
    default: return kExitError;
  }
}

int unlock_exit_code(const Status& s) { return s.code() == EIO ? kExitNotAStore : kExitKey; }

StorePaths StorePaths::of(const std::string& root) {
  return {root, root + "/meta", root + "/objects", root + "/lock"};
}

OpenStore::~OpenStore() {
  meta.reset();
  if (meta_dir_fd >= 0) ::close(meta_dir_fd);
  if (lock_fd >= 0) ::close(lock_fd);
}

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Status check_empty_dir(const std::string& dir) {
  std::error_code ec;
  if (!stdfs::exists(dir, ec)) {
    stdfs::create_directories(dir, ec);
    if (ec) return Status::IOError(ec.value(), "cannot create " + dir + ": " + ec.message());
    return Status::Ok();
  }
  if (!stdfs::is_directory(dir, ec)) return Status::InvalidArgument(dir + " is not a directory");
  if (stdfs::exists(dir + "/meta/data.mdb", ec)) return Status::Exists(dir + " is already a cmkfs store");
  if (!stdfs::is_empty(dir, ec)) return Status::InvalidArgument(dir + " is not empty; cmkfs init needs an empty directory");
  return Status::Ok();
}

// A new store's objects go where no object is yet: two stores in one namespace would see each
// other's objects as strays, and fsck of one would offer to remove the other's.
Status check_objects_empty(const ObjectsConfig& objects) {
  auto store = open_object_store(objects, -1);
  if (!store.ok()) return store.status();
  bool any = false;
  CMKFS_RETURN_IF_ERROR((*store)->list([&](const Id128&) { any = true; }, [&](const std::string&) { any = true; }));
  if (any) return Status(ENOTEMPTY, objects.url() + " already holds objects; give the new store a namespace of its own");
  return Status::Ok();
}

// A store directory's own parts: meta/ (0700), the lock, and objects/ when they are kept there,
// made relative to the store's directory `root` (open) and following no link (the store may be
// on a server that plants one meanwhile). Returns meta/, open.
Result<Fd> make_store_skeleton(int root, const StorePaths& paths, bool local_objects) {
  if (::mkdirat(root, "meta", 0700) != 0) return Status::IOError(errno, "mkdir " + paths.meta);
  auto meta_dir = open_private_dir(root, "meta", paths.meta);
  if (!meta_dir.ok()) return meta_dir.status();
  if (local_objects) CMKFS_RETURN_IF_ERROR(create_object_dirs(root, paths.objects));
  auto lock = open_private_file(root, "lock", O_RDWR | O_CREAT | O_EXCL, paths.lock);
  if (!lock.ok()) return lock.status();
  return meta_dir;
}

// meta/engine.json: which store this directory is, its metadata being elsewhere.
Status write_engine_marker(int meta_dir, const StorePaths& paths, const MetaConfig& meta, const Id128& store_id) {
  std::string shown = paths.meta + "/engine.json";
  auto marker = open_private_file(meta_dir, "engine.json", O_WRONLY | O_CREAT | O_EXCL, shown);
  if (!marker.ok()) return marker.status();
  std::string text = engine_marker_json(meta, store_id);
  if (::write(marker->get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) || ::fsync(marker->get()) != 0) {
    return Status::IOError(errno, "cannot write " + shown);
  }
  return Status::Ok();
}

// The LMDB metadata in the open directory `meta_dir` (`shown` names it). LMDB opens its two
// files by name, following links, and creates them; a link swapped in between a check and that
// open (a remote store's server can) would have it write its pages or lock table into any file
// this user may write. So both are opened here (created, with `create`: O_EXCL follows no link)
// and checked (regular, one link, the user's), and LMDB opens them through a directory of this
// host's own whose two links name those descriptors; they stay open as long as LMDB's (closing
// one would drop the POSIX locks LMDB keeps on its file).
Result<std::unique_ptr<meta::MetaStore>> open_lmdb_meta(int meta_dir, const std::string& shown, bool create,
                                                       bool read_only) {
  struct stat checked;
  // Opened for writing when LMDB will write: its reopen through the link asks no more than this.
  int data_flags = create ? O_RDWR | O_CREAT | O_EXCL : read_only ? O_RDONLY : O_RDWR;
  auto data = open_private_file(meta_dir, "data.mdb", data_flags, shown + "/data.mdb", &checked);
  if (!data.ok()) return data.status();
  auto lock = open_private_file(meta_dir, "lock.mdb", O_RDWR | O_CREAT | (create ? O_EXCL : 0), shown + "/lock.mdb");
  if (!lock.ok()) return lock.status();
  auto links = LinkDirectory::make({{"data.mdb", data->get()}, {"lock.mdb", lock->get()}});
  if (!links.ok()) return Status(links.status().code(), "cannot open the store's metadata: " + links.status().message());
  std::vector<Fd> held;
  held.push_back(std::move(*data));
  held.push_back(std::move(*lock));
  auto meta = meta::MetaStore::open(links->path(), create, read_only, std::move(held));
  if (!meta.ok()) {
    // LMDB's messages name the path it was given: the user knows the store's.
    std::string message = meta.status().message();
    for (size_t at = 0; (at = message.find(links->path(), at)) != std::string::npos; at += shown.size()) {
      message.replace(at, links->path().size(), shown);
    }
    return Status(meta.status().code(), "cannot open the store's metadata: " + message);
  }
  // And what LMDB opened is the file that was checked.
  struct stat opened;
  int fd = (*meta)->data_fd();
  if (fd < 0 || ::fstat(fd, &opened) != 0 || checked.st_dev != opened.st_dev || checked.st_ino != opened.st_ino) {
    return Status::AccessDenied(shown + "/data.mdb changed while it was opened");
  }
  return meta;
}

meta::InodeRecord root_inode() {
  meta::InodeRecord r;
  r.ino = meta::kRootIno;
  r.parent = meta::kRootIno;
  r.mode = S_IFDIR | 0755;
  r.uid = ::getuid();
  r.gid = ::getgid();
  r.nlink = 2;
  r.size = 4096;
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
  r.atime = r.mtime = r.ctime = {ns / 1000000000, static_cast<uint32_t>(ns % 1000000000)};
  return r;
}

}  // namespace

Status init_store(const InitOptions& opts, std::ostream& out) {
  if (!crypto::ChunkLayout::valid_chunk_size(opts.chunk_size)) {
    return Status::InvalidArgument("chunk size must be a power of two from 4 KiB to 1 MiB");
  }
  // The topmost directory init is about to create (the store's, or a missing parent of it).
  std::string made_top;
  for (stdfs::path p = stdfs::absolute(opts.store).lexically_normal(); !p.empty() && p != p.root_path();
       p = p.parent_path()) {
    std::error_code ec;
    if (stdfs::exists(p, ec) || ec) break;
    made_top = p.string();
  }
  CMKFS_RETURN_IF_ERROR(check_empty_dir(opts.store));
  std::string root = stdfs::canonical(opts.store).string();
  StorePaths paths = StorePaths::of(root);
  // A failed init leaves nothing it made: the directories it created (or, when the store's was
  // there and empty, what was put in it), a key file it created, its binding. What was put in it
  // is removed through the directory opened here, not by its name, which could meanwhile be a
  // link to a directory of the user's (remove_all itself follows no link below it).
  std::string made_key_file, made_binding;
  bool done = false;
  Fd root_dir;
  struct Undo {
    std::function<void()> fn;
    ~Undo() { fn(); }
  } undo{[&] {
    if (done) return;
    std::error_code e;
    if (!made_top.empty()) {
      stdfs::remove_all(made_top, e);
    } else if (root_dir.get() >= 0) {
      std::string opened = "/proc/self/fd/" + std::to_string(root_dir.get());
      for (const auto& entry : stdfs::directory_iterator(opened, e)) stdfs::remove_all(entry.path(), e);
    }
    if (!made_key_file.empty()) stdfs::remove(made_key_file, e);
    if (!made_binding.empty()) stdfs::remove(made_binding, e);
  }};
  {
    auto opened = open_private_dir(AT_FDCWD, root, root);
    if (!opened.ok()) return opened.status();
    root_dir = std::move(*opened);
  }

  meta::Superblock sb;
  CMKFS_RETURN_IF_ERROR(crypto::random_bytes(sb.store_id));
  sb.chunk_size = opts.chunk_size;
  sb.created = unix_now();
  sb.dek_generation = 1;
  ObjectsConfig objects = opts.objects;
  if (!objects.local()) {
    if (objects.ns.empty()) objects.ns = to_hex(sb.store_id);
    CMKFS_RETURN_IF_ERROR(objects.check_host_part());
    objects.make_paths_absolute();
    if (objects.kind == "s3") {
      objects.object_size = ObjectsConfig::s3_object_size(opts.chunk_size);
      CMKFS_RETURN_IF_ERROR(create_s3_bucket(objects));
    }
    CMKFS_RETURN_IF_ERROR(check_objects_empty(objects));
    sb.objects = objects.public_json();
  }
  MetaConfig meta_config = opts.meta;
  std::string conninfo;
  if (!meta_config.lmdb()) {
    if (meta_config.schema.empty()) meta_config.schema = MetaConfig::default_schema(sb.store_id);
    meta_config.conninfo_file = stdfs::absolute(meta_config.conninfo_file).string();
    auto c = read_conninfo(meta_config.conninfo_file);
    if (!c.ok()) return c.status();
    conninfo = std::move(*c);
  }

  keyclient::KekConfig kek = opts.kek;
  bool created_key_file = false;
  if (kek.provider == keyclient::ProviderKind::kLocal && kek.key_command.empty()) {
    if (kek.key_file.empty()) kek.key_file = host_config_dir() + "/keys/" + to_hex(sb.store_id) + ".key";
    kek.key_file = stdfs::absolute(kek.key_file).string();
    if (!stdfs::exists(kek.key_file)) {
      CMKFS_RETURN_IF_ERROR(keyclient::create_local_key_file(kek.key_file));
      created_key_file = true;
      made_key_file = kek.key_file;
    }
  }
  auto provider = command_provider(kek, sb.store_id);
  if (!provider.ok()) return provider.status();
  CMKFS_RETURN_IF_ERROR((*provider)->validate());
  auto dek = crypto::random_key();
  if (!dek.ok()) return dek.status();
  auto wrapped = (*provider)->wrap(*dek);
  AuditLog(opts.audit_log.empty() ? default_audit_path(sb.store_id) : opts.audit_log, to_hex(sb.store_id))
      .record("wrap", wrapped.ok() ? wrapped->key_id : kek.key_identifier, wrapped.ok() ? "ok" : "failed", {{"reason", "init"}});
  if (!wrapped.ok()) return wrapped.status();
  if (kek.customer_managed()) kek.versioned_key_identifier = wrapped->key_id;
  sb.kek = kek.to_json();
  auto keys = crypto::derive_store_keys(*dek);
  if (!keys.ok()) return keys.status();
  sb.seal(keys->super_mac.bytes());
  // The host's binding first: a store that exists is always bound (a failed init leaves at most
  // a binding of nothing).
  auto fingerprint = crypto::dek_fingerprint(*dek);
  if (!fingerprint.ok()) return fingerprint.status();
  HostBinding binding{.store_id = sb.store_id,
                      .kek = kek,
                      .next = {},
                      .fingerprints = {{sb.dek_generation, *fingerprint}},
                      .generation = sb.dek_generation,
                      .objects = objects,
                      .meta = meta_config};
  CMKFS_RETURN_IF_ERROR(save_binding(binding));
  made_binding = binding_path(sb.store_id);

  auto meta_dir = make_store_skeleton(root_dir.get(), paths, objects.local());
  if (!meta_dir.ok()) return meta_dir.status();
  auto store = meta_config.lmdb() ? open_lmdb_meta(meta_dir->get(), paths.meta, /*create=*/true, /*read_only=*/false)
                                  : meta::MetaStore::open_postgres(conninfo, meta_config.schema, true, false);
  if (!store.ok()) return store.status();
  auto txn = (*store)->begin(true, &*keys);
  if (!txn.ok()) return txn.status();
  if (!meta_config.lmdb()) {
    if (txn->superblock().ok()) {
      return Status::Exists("PostgreSQL schema " + meta_config.schema + " already holds a store");
    }
    CMKFS_RETURN_IF_ERROR(write_engine_marker(meta_dir->get(), paths, meta_config, sb.store_id));
  }
  CMKFS_RETURN_IF_ERROR(txn->put_superblock(sb));
  CMKFS_RETURN_IF_ERROR(txn->put_wrapped_dek(sb.dek_generation, wrapped->to_json()));
  CMKFS_RETURN_IF_ERROR(txn->put_inode(root_inode()));
  CMKFS_RETURN_IF_ERROR(txn->commit());
  CMKFS_RETURN_IF_ERROR((*store)->sync());

  out << "initialized cmkfs store " << root << "\n"
      << "  store id:   " << to_hex(sb.store_id) << "\n"
      << "  chunk size: " << opts.chunk_size << " bytes, AES-256-GCM\n"
      << "  metadata:   " << (meta_config.lmdb() ? paths.meta : meta_config.describe() + " (connection " + meta_config.conninfo_file + ")") << "\n"
      << "  objects:    " << (objects.local() ? paths.objects : objects.url() + " (" + (objects.kind == "s3" ? "endpoint " + objects.endpoint : "cluster " + objects.conf) + ")") << "\n"
      << "  bound in:   " << binding_path(sb.store_id) << " (data key fingerprint " << *fingerprint << ")\n";
  if (kek.provider == keyclient::ProviderKind::kLocal) {
    out << "  key:        " << (kek.key_command.empty() ? "local key file " + kek.key_file : "what the local key command prints")
        << (created_key_file ? " (created, mode 0600)" : "")
        << "\n  keep the key file safe and outside the store: without it the data cannot be read\n";
  } else {
    out << "  key:        " << kek.versioned_key_identifier
        << (kek.identity.empty() ? "" : " (identity " + kek.identity + ")") << "\n";
  }
  done = true;
  return Status::Ok();
}

Status make_store_directory(const std::string& root, const MetaConfig& meta) {
  CMKFS_RETURN_IF_ERROR(check_empty_dir(root));
  auto conninfo = read_conninfo(meta.conninfo_file);
  if (!conninfo.ok()) return conninfo.status();
  auto store = meta::MetaStore::open_postgres(*conninfo, meta.schema, /*create=*/false, /*read_only=*/true);
  if (!store.ok()) return store.status();
  auto txn = (*store)->begin(false);
  if (!txn.ok()) return txn.status();
  auto sb = txn->superblock();
  if (!sb.ok()) return Status(sb.status().code(), "schema " + meta.schema + " holds no store: " + sb.status().message());
  StorePaths paths = StorePaths::of(stdfs::canonical(root).string());
  auto root_dir = open_private_dir(AT_FDCWD, paths.root, paths.root);
  if (!root_dir.ok()) return root_dir.status();
  auto meta_dir = make_store_skeleton(root_dir->get(), paths, sb->objects.empty());
  if (!meta_dir.ok()) return meta_dir.status();
  return write_engine_marker(meta_dir->get(), paths, meta, sb->store_id);
}

Result<std::unique_ptr<meta::MetaStore>> open_checked_meta(OpenStore& s, bool read_only) {
  if (!s.meta_config.lmdb()) {
    auto conninfo = read_conninfo(s.meta_config.conninfo_file);
    if (!conninfo.ok()) return conninfo.status();
    auto meta = meta::MetaStore::open_postgres(*conninfo, s.meta_config.schema, /*create=*/false, read_only);
    if (!meta.ok()) return Status(meta.status().code(), "cannot open the store's metadata: " + meta.status().message());
    return meta;
  }
  return open_lmdb_meta(s.meta_dir_fd, s.paths.meta, /*create=*/false, read_only);
}

namespace {

// The store id in STORE/meta/engine.json (meta_config.h).
Result<Id128> read_engine_marker(int meta_dir, const std::string& shown) {
  auto fd = open_private_file(meta_dir, "engine.json", O_RDONLY, shown);
  if (!fd.ok()) return fd.status();
  char buf[4096];
  ssize_t n = ::read(fd->get(), buf, sizeof buf);
  if (n < 0) return Status::IOError(errno, "cannot read " + shown);
  return parse_engine_marker(std::string_view(buf, static_cast<size_t>(n)));
}

}  // namespace

int open_store_exit_code(const Status& s) {
  if (s.code() == EBUSY) return kExitBusy;
  return s.code() == EUCLEAN ? kExitKey : kExitNotAStore;
}

namespace {

// The objects where the store says they are, reached the way this host's binding says: a store
// names no cluster address and no credential. Until unlock() checks the superblock's MAC, a
// store that disagrees with the binding is refused.
Result<std::unique_ptr<ObjectStore>> open_objects(const OpenStore& s, int store_dir) {
  ObjectsConfig wanted;
  if (!s.super.objects.empty()) {
    auto c = ObjectsConfig::from_json(s.super.objects);
    if (!c.ok()) return c.status();
    wanted = std::move(*c);
  }
  if (!s.binding) {
    if (wanted.local()) return open_local_object_store(store_dir);
    return unreachable_object_store(Status(ENOKEY, "the store's objects are in " + wanted.url() +
                                                       " and this host has no binding saying how to reach them"));
  }
  if (!s.binding->objects.same_place(wanted)) {
    return Status(EUCLEAN, "the store says its objects are in " + wanted.url() + ", this host's binding says " +
                               s.binding->objects.url());
  }
  return open_object_store(s.binding->objects, store_dir);
}

}  // namespace

Result<std::unique_ptr<OpenStore>> open_store(const std::string& root_arg, bool exclusive, bool read_only,
                                              const MetaConfig* given_meta) {
  std::error_code ec;
  if (!stdfs::is_directory(root_arg, ec)) return Status::NotFound(root_arg + " does not exist or is not a directory");
  auto s = std::make_unique<OpenStore>();
  // The path the user gave is theirs to resolve; inside the store, nothing is followed.
  s->paths = StorePaths::of(stdfs::canonical(root_arg).string());
  auto dir = open_private_dir(AT_FDCWD, s->paths.root, s->paths.root);
  if (!dir.ok()) return dir.status();
  auto meta_dir = open_private_dir(dir->get(), "meta", s->paths.meta);
  if (!meta_dir.ok()) {
    if (meta_dir.status().code() != ENOENT) return meta_dir.status();
    return Status::InvalidArgument(root_arg + " is not a cmkfs store (no meta/data.mdb; create one with cmkfs init)");
  }
  // The metadata is in STORE/meta (LMDB), or where the host's binding of the store it names says.
  std::optional<Id128> marked;
  if (::faccessat(meta_dir->get(), "data.mdb", F_OK, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT) {
    auto id = read_engine_marker(meta_dir->get(), s->paths.meta + "/engine.json");
    if (!id.ok() && id.status().code() == ENOENT) {
      return Status::InvalidArgument(root_arg + " is not a cmkfs store (no meta/data.mdb; create one with cmkfs init)");
    }
    if (!id.ok()) return id.status();
    marked = *id;
  }
  if (exclusive) {
    auto lock = open_private_file(dir->get(), "lock", O_RDWR | O_CREAT, s->paths.lock);
    if (!lock.ok()) return lock.status();
    s->lock_fd = lock->release();
    if (::flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
      return Status(EBUSY, "store " + s->paths.root + " is in use (mounted or being checked by another cmkfs)");
    }
  }
  s->meta_dir_fd = meta_dir->release();
  // Every command beside a running mount holds this shared: compaction, which replaces the
  // metadata file, takes it exclusively. A reader too: LMDB keeps a lock file's transaction
  // counter while any process has it open, and a writer of the replaced file would pick its
  // meta page from that stale counter (the compacted copy's other page is empty).
  if (!exclusive && ::flock(s->meta_dir_fd, LOCK_SH) != 0) {
    return Status::IOError(errno, "cannot lock " + s->paths.meta);
  }
  if (marked) {
    auto binding = load_binding(*marked);
    if (binding.ok()) {
      if (binding->meta.lmdb()) {
        return Status(EUCLEAN, s->paths.meta + " says the metadata is elsewhere; this host's binding says it is there");
      }
      s->meta_config = binding->meta;
    } else if (given_meta != nullptr && binding.status().code() == ENOENT) {
      s->meta_config = *given_meta;  // `cmkfs trust` binds it once the key proves the store
    } else {
      return Status(binding.status().code() == ENOENT ? ENOKEY : binding.status().code(),
                    "store " + to_hex(*marked) + " keeps its metadata outside " + s->paths.root +
                        " and this host has no binding saying where: " + binding.status().message());
    }
  }
  auto meta = open_checked_meta(*s, read_only);
  if (!meta.ok()) return meta.status();
  s->meta = std::move(*meta);
  if (exclusive) CMKFS_RETURN_IF_ERROR(s->meta->lock_writer());
  auto txn = s->meta->begin(false);
  if (!txn.ok()) return txn.status();
  auto sb = txn->superblock();
  if (!sb.ok()) return sb.status();
  s->super = std::move(*sb);
  if (marked && s->super.store_id != *marked) {
    return Status(EUCLEAN, "the metadata in " + s->meta_config.describe() + " is store " + to_hex(s->super.store_id) +
                               "'s, not store " + to_hex(*marked) + "'s");
  }
  auto kek = keyclient::KekConfig::from_json(s->super.kek);
  if (!kek.ok()) return kek.status();
  s->kek = std::move(*kek);
  if (exclusive || read_only) {  // the store's one writer (a mount, fsck's reader): it keeps or reads the notes
    auto creations = CreationLog::open(s->meta_dir_fd, /*writable=*/!read_only);
    if (!creations.ok()) return creations.status();
    s->creations = std::move(*creations);
  }
  auto binding = load_binding(s->super.store_id);
  if (binding.ok()) s->binding = std::move(*binding);
  else s->binding_error = binding.status();
  auto objects = open_objects(*s, dir->get());
  if (!objects.ok()) return objects.status();
  s->objects = std::move(*objects);
  return s;
}

Result<std::unique_ptr<keyclient::KeyProvider>> bound_provider(const OpenStore& store, double timeout_seconds,
                                                               std::shared_ptr<keyclient::CallWatchdog> watchdog) {
  if (!store.binding) {
    const Status& e = store.binding_error;
    if (e.code() != ENOENT) return Status(e.code() == EACCES ? EACCES : EUCLEAN, e.message());
    return Status(ENOKEY, "store " + to_hex(store.super.store_id) + " is not bound to this host (" +
                              binding_path(store.super.store_id) + "); if you trust it, bind it with: cmkfs trust " +
                              store.paths.root + " and its key options");
  }
  auto settings = store.binding->match(store.kek);
  if (!settings.ok()) {
    return Status(EUCLEAN, settings.status().message() + " (if you changed them, bind the store again with cmkfs trust)");
  }
  return command_provider(*settings, store.super.store_id, timeout_seconds, std::move(watchdog));
}

Status bind_next(OpenStore& store, const keyclient::KekConfig& next) {
  if (!store.binding) return Status(ENOKEY, "store " + to_hex(store.super.store_id) + " is not bound to this host");
  auto b = update_binding(store.super.store_id, [&](HostBinding& b) {
    b.next = next;
    return Status::Ok();
  });
  if (!b.ok()) return b.status();
  store.binding = std::move(*b);
  return Status::Ok();
}

Status bind_store(OpenStore& store, const keyclient::KekConfig& kek, const crypto::SecretBytes& dek) {
  auto fp = crypto::dek_fingerprint(dek);
  if (!fp.ok()) return fp.status();
  auto b = update_binding(store.super.store_id, [&](HostBinding& b) {
    b.kek = kek;
    b.next.reset();
    b.fingerprints[store.super.dek_generation] = *fp;
    b.generation = std::max(b.generation, store.super.dek_generation);
    return Status::Ok();
  });
  if (!b.ok()) return b.status();
  store.binding = std::move(*b);
  store.binding_error = Status::Ok();
  return Status::Ok();
}

Result<keyclient::WrappedKey> rewrap(OpenStore& store, const crypto::SecretBytes& dek, keyclient::KekConfig kek,
                                     keyclient::KeyProvider& provider) {
  auto wrapped = provider.wrap(dek);
  if (!wrapped.ok()) return wrapped.status();
  // The new wrapped key replaces the only other copy: it must be of the configured key and give
  // the data key back before it is kept.
  if (!kek.admits(wrapped->key_id)) {
    return Status(EKEYREJECTED, "the key provider wrapped with " + wrapped->key_id + ", not a version of the configured key");
  }
  auto back = provider.unwrap(*wrapped);
  if (!back.ok()) return Status(back.status().code(), "the rewrapped data key does not unwrap: " + back.status().message());
  if (!crypto::equal_constant_time(back->bytes(), dek.bytes())) {
    return Status(EKEYREJECTED, "the rewrapped data key unwraps to another key; nothing was changed");
  }
  kek.versioned_key_identifier = wrapped->key_id;
  kek.last_rotation = unix_now();
  auto keys = crypto::derive_store_keys(dek);
  if (!keys.ok()) return keys.status();
  meta::Superblock sb = store.super;
  sb.kek = kek.to_json();
  sb.seal(keys->super_mac.bytes());
  auto txn = store.meta->begin(true);
  if (!txn.ok()) return txn.status();
  CMKFS_RETURN_IF_ERROR(txn->put_wrapped_dek(sb.dek_generation, wrapped->to_json()));
  CMKFS_RETURN_IF_ERROR(txn->put_superblock(sb));
  CMKFS_RETURN_IF_ERROR(txn->commit());
  CMKFS_RETURN_IF_ERROR(store.meta->sync());
  store.super = std::move(sb);
  store.kek = std::move(kek);
  return wrapped;
}

namespace {

// Unwraps generation `generation`'s data key under `settings` (its wrapped key must name their
// key) and checks it against `fingerprint` when given; audited.
Result<Unlocked> unwrap_generation(OpenStore& store, const keyclient::KekConfig& settings, keyclient::KeyProvider& provider,
                                   uint32_t generation, const std::string* fingerprint, AuditLog& audit,
                                   std::string_view reason, bool verify_superblock) {
  std::string blob;
  {
    auto txn = store.meta->begin(false);
    if (!txn.ok()) return txn.status();
    auto w = txn->wrapped_dek(generation);
    if (!w.ok()) return w.status();
    blob = std::move(*w);
  }
  auto wrapped = keyclient::WrappedKey::from_json(blob);
  if (!wrapped.ok()) return wrapped.status();
  // Checked before any request: the wrapped key may only send us to the key the settings name.
  if (!settings.admits(wrapped->key_id) || wrapped->provider != settings.provider) {
    return Status(EUCLEAN, "the store's data key is wrapped by '" + wrapped->key_id + "', which " +
                               (fingerprint != nullptr ? "this host's binding of the store does not name"
                                                       : "is not the key given"));
  }
  auto verified = [&]() -> Result<crypto::SecretBytes> {
    auto dek = provider.unwrap(*wrapped);
    if (!dek.ok()) return dek.status();
    if (fingerprint != nullptr) {
      auto fp = crypto::dek_fingerprint(*dek);
      if (!fp.ok()) return fp.status();
      if (!crypto::equal_constant_time(crypto::as_bytes(*fp), crypto::as_bytes(*fingerprint))) {
        return Status(EUCLEAN, "the store's data key (generation " + std::to_string(generation) +
                                   ") is not the one this host bound to store " + to_hex(store.super.store_id) +
                                   ": refused (a swapped or forged store?)");
      }
    }
    if (verify_superblock) {
      auto keys = crypto::derive_store_keys(*dek);
      if (!keys.ok()) return keys.status();
      CMKFS_RETURN_IF_ERROR(store.super.verify(keys->super_mac.bytes()));
    }
    return dek;
  }();
  nlohmann::json extra{{"reason", std::string(reason)}, {"generation", generation}};
  const char* result = "ok";
  if (!verified.ok()) {
    const Status& s = verified.status();
    result = keyclient::is_definitive_refusal(s)     ? "refused"
             : s.code() == EUCLEAN || s.code() == EIO ? "tampered"
                                                      : "unreachable";
    extra["error"] = s.message();
  }
  audit.record("unwrap", wrapped->key_id, result, extra);
  if (!verified.ok()) return verified.status();
  return Unlocked{std::move(*verified), std::move(*wrapped), {}, {}};
}

const std::string* bound_fingerprint(const OpenStore& store, uint32_t generation) {
  auto fp = store.binding->fingerprints.find(generation);
  return fp == store.binding->fingerprints.end() ? nullptr : &fp->second;
}

}  // namespace

Result<Unlocked> unwrap_with(OpenStore& store, const keyclient::KekConfig& settings, keyclient::KeyProvider& provider,
                             const std::string* fingerprint, AuditLog& audit, std::string_view reason) {
  return unwrap_generation(store, settings, provider, store.super.dek_generation, fingerprint, audit, reason, true);
}

Result<Unlocked> unlock(OpenStore& store, keyclient::KeyProvider& provider, AuditLog& audit, std::string_view reason) {
  if (!store.binding) return Status(ENOKEY, "store " + to_hex(store.super.store_id) + " is not bound to this host");
  auto settings = store.binding->match(store.kek);
  if (!settings.ok()) return settings.status();
  uint32_t current = store.super.dek_generation;
  if (current < store.binding->generation) {
    return Status(EUCLEAN, "the store is back at data-key generation " + std::to_string(current) + ", but reached " +
                               std::to_string(store.binding->generation) + " (rolled back?)");
  }
  const std::string* fp = bound_fingerprint(store, current);
  if (fp == nullptr) {
    return Status(EUCLEAN, "this host's binding has no fingerprint for data-key generation " + std::to_string(current));
  }
  auto unlocked = unwrap_generation(store, *settings, provider, current, fp, audit, reason, true);
  if (!unlocked.ok()) return unlocked;
  // A data-key rotation in progress: the older generations' keys too, each checked the same way.
  auto keys = crypto::derive_store_keys(unlocked->dek);
  if (!keys.ok()) return keys.status();
  std::vector<uint32_t> gens;
  {
    auto txn = store.meta->begin(false);
    if (!txn.ok()) return txn.status();
    auto name = txn->name_key(current, keys->meta);
    if (name.ok()) unlocked->name_key = std::move(*name);
    else if (name.status().code() != ENOENT) return name.status();
    auto g = txn->wrapped_generations();
    if (!g.ok()) return g.status();
    gens = std::move(*g);
  }
  for (uint32_t g : gens) {
    // A newer one is a rotation committed since this superblock was read: it is taken when the
    // superblock that names it is (a superblock rolled back below it is refused above).
    if (g >= current) continue;
    const std::string* older_fp = bound_fingerprint(store, g);
    if (older_fp == nullptr) {
      return Status(EUCLEAN, "this host's binding has no fingerprint for data-key generation " + std::to_string(g));
    }
    auto older = unwrap_generation(store, *settings, provider, g, older_fp, audit, reason, false);
    if (!older.ok()) return older.status();
    unlocked->older.emplace(g, std::move(older->dek));
  }
  return unlocked;
}

Status install_keys(Keyring& keyring, uint32_t current, Unlocked unlocked) {
  std::map<uint32_t, crypto::SecretBytes> deks = std::move(unlocked.older);
  deks[current] = std::move(unlocked.dek);
  return keyring.install(current, std::move(deks), std::move(unlocked.name_key));
}

}  // namespace cmkfs::fs
