#include <nlohmann/json.hpp>

#include "crypto/base/coding.h"
#include "crypto/base/hex.h"
#include "crypto/base/json_integer.h"
#include "meta/engine.h"
#include "meta/meta.h"
#include "meta/records.h"

namespace cmkfs::meta {

// ---- MetaStore ----

std::string_view table_name(Table t) {
  static constexpr std::string_view names[kTableCount] = {kTableSuper,   kTableKeys,    kTableInodes,
                                                          kTableDirents, kTableOrphans, kTableRecovery};
  return names[static_cast<int>(t)];
}

Result<std::unique_ptr<MetaStore>> MetaStore::open(const std::string& dir, bool create, bool read_only,
                                                   std::vector<Fd> held) {
  std::unique_ptr<MetaStore> store(new MetaStore());
  std::array<uint8_t, 8> origin;
  CMKFS_RETURN_IF_ERROR(crypto::random_bytes(origin));
  store->origin_ = to_hex(origin);
  store->read_only_ = read_only;
  auto engine = open_lmdb_engine(dir, create, read_only, &store->batch_stats_, std::move(held));
  if (!engine.ok()) return engine.status();
  store->engine_ = std::move(*engine);
  return store;
}

Result<std::unique_ptr<MetaStore>> MetaStore::open_postgres(const std::string& conninfo, const std::string& schema,
                                                            bool create, bool read_only) {
  std::unique_ptr<MetaStore> store(new MetaStore());
  std::array<uint8_t, 8> origin;
  CMKFS_RETURN_IF_ERROR(crypto::random_bytes(origin));
  store->origin_ = to_hex(origin);
  store->read_only_ = read_only;
  auto engine = open_postgres_engine(conninfo, schema, create, read_only);
  if (!engine.ok()) return engine.status();
  store->engine_ = std::move(*engine);
  return store;
}

MetaStore::~MetaStore() = default;

Result<Txn> MetaStore::begin(bool write, const crypto::StoreKeys* keys) {
  auto t = engine_->begin(write);
  if (!t.ok()) return t.status();
  return Txn(this, std::move(*t), keys);
}

void MetaStore::start_group_commit(std::chrono::microseconds interval) { engine_->start_group_commit(interval); }
void MetaStore::when_durable(std::function<void()> fn) { engine_->when_durable(std::move(fn)); }
Status MetaStore::sync() { return engine_->sync(); }
int MetaStore::data_fd() const { return engine_->data_fd(); }
void MetaStore::release_mapped_pages() { engine_->release_mapped_pages(); }
Status MetaStore::copy_compacted(int fd) { return engine_->copy_compacted(fd); }
Status MetaStore::compact_in_place() { return engine_->compact_in_place(); }
Status MetaStore::lock_writer() { return engine_->lock_writer(); }
Status MetaStore::listen(std::function<void(std::string_view)> fn) { return engine_->listen(std::move(fn)); }
bool MetaStore::shared() const { return engine_->shared(); }
void MetaStore::stop_listening() { engine_->stop_listening(); }
Status MetaStore::hold(const Id128& file_id) { return engine_->hold(to_hex(file_id)); }
Status MetaStore::release_hold(const Id128& file_id) { return engine_->release_hold(to_hex(file_id)); }
Result<bool> MetaStore::held_elsewhere(const Id128& file_id) { return engine_->held_elsewhere(to_hex(file_id)); }
Status MetaStore::renew_holds() { return engine_->renew_holds(); }

// ---- the change feed ----
//
// A payload: "<origin hex>:" then hex of a record sealed under the meta key (table "feed") holding
// JSON {"i": [inodes], "e": [[parent, "<name hex>"], ...]}: names in hex, since a name is any
// bytes and JSON takes only UTF-8. The origin (random per MetaStore) lets a process skip its own;
// it is not trusted: a forged one can only make a process skip a payload.

namespace {
constexpr size_t kFeedPayloadMax = 7000;  // NOTIFY takes 8000 bytes
// The JSON that fits: the payload is the origin (16), ':', and hex of nonce (12) + JSON + tag (16).
constexpr size_t kFeedJsonMax = (kFeedPayloadMax - 17) / 2 - 28 - 16;  // less {"i":[],"e":[]}
constexpr size_t kInodeJson = 21;                                       // 20 digits and a comma
size_t entry_json(const std::string& name) { return 20 + 2 * name.size() + 6; }  // [N,"hex"],
}  // namespace

// The marker listen() hands over for "payloads may have been missed": a NUL, which no NOTIFY
// payload (text) can hold, so nobody with a database login can send it.
const std::string_view MetaStore::kFeedMissed{"\0", 1};

Status Txn::publish_changes() {
  if (changed_inodes_.empty() && changed_entries_.empty()) return Status::Ok();
  if (keys_ == nullptr || keys_->empty()) return Status::Ok();
  // Split so that each sealed payload fits NOTIFY (a name is at most 255 bytes: one always fits).
  size_t i = 0, e = 0;
  while (i < changed_inodes_.size() || e < changed_entries_.size()) {
    nlohmann::json inos = nlohmann::json::array(), entries = nlohmann::json::array();
    size_t used = 0;
    for (; i < changed_inodes_.size() && used + kInodeJson <= kFeedJsonMax; ++i, used += kInodeJson) {
      inos.push_back(changed_inodes_[i]);
    }
    for (; e < changed_entries_.size() && used + entry_json(changed_entries_[e].second) <= kFeedJsonMax; ++e) {
      used += entry_json(changed_entries_[e].second);
      entries.push_back({changed_entries_[e].first, to_hex(crypto::as_bytes(changed_entries_[e].second))});
    }
    nlohmann::json j{{"i", inos}, {"e", entries}};
    auto sealed = seal_record(keys_->meta, "feed", "", j.dump());
    if (!sealed.ok()) return sealed.status();
    CMKFS_RETURN_IF_ERROR(txn_->notify(store_->origin_ + ":" + to_hex(crypto::as_bytes(*sealed))));
  }
  return Status::Ok();
}

Result<MetaStore::Changes> MetaStore::open_changes(const crypto::StoreKeys& keys, std::string_view payload) const {
  Changes out;
  if (payload == kFeedMissed) {
    out.everything = true;
    return out;
  }
  auto colon = payload.find(':');
  if (colon == std::string_view::npos) return Status::Corruption("change feed: malformed payload");
  if (payload.substr(0, colon) == origin_) return out;  // this process's own
  auto sealed = from_hex(payload.substr(colon + 1));
  if (!sealed) return Status::Corruption("change feed: malformed payload");
  auto plain = open_record(keys, "feed", "", std::string_view(reinterpret_cast<const char*>(sealed->data()), sealed->size()));
  if (!plain.ok()) return plain.status();
  try {
    auto j = nlohmann::json::parse(*plain);
    for (const auto& ino : j.at("i")) out.inodes.push_back(json_integer<uint64_t>(ino));
    for (const auto& e : j.at("e")) {
      auto name = from_hex(e.at(1).get<std::string>());
      if (!name || name->empty() || name->size() > 255) return Status::Corruption("change feed: malformed name");
      out.entries.emplace_back(json_integer<uint64_t>(e.at(0)), std::string(name->begin(), name->end()));
    }
  } catch (const nlohmann::json::exception&) {
    return Status::Corruption("change feed: malformed change");
  }
  return out;
}
Status MetaStore::reserve_space(uint64_t bytes) { return engine_->reserve_space(bytes); }

// ---- Txn ----

Txn::Txn(MetaStore* store, std::unique_ptr<EngineTxn> txn, const crypto::StoreKeys* keys)
    : store_(store), txn_(std::move(txn)), keys_(keys) {}
Txn::Txn(Txn&& o) noexcept = default;
Txn::~Txn() = default;

Status Txn::commit(const std::function<void()>& applied) {
  auto t = std::move(txn_);
  if (store_->shared()) {
    txn_ = std::move(t);
    CMKFS_RETURN_IF_ERROR(publish_changes());
    t = std::move(txn_);
  }
  return t->commit(applied);
}

Status Txn::need_keys() const {
  if (keys_ == nullptr || keys_->empty()) return Status::AccessDenied("the store's keys are not available");
  return Status::Ok();
}

// ---- superblock and wrapped keys ----

Result<Superblock> Txn::superblock() {
  auto raw = txn_->get(Table::kSuper, kSuperKey);
  if (!raw.ok()) {
    if (raw.status().code() == ENOENT) return Status::Corruption("the superblock is missing");
    return raw.status();
  }
  return Superblock::from_json(*raw);
}

Status Txn::put_superblock(const Superblock& sb) { return txn_->put(Table::kSuper, kSuperKey, sb.to_json()); }

Result<std::string> Txn::wrapped_dek(uint32_t generation) {
  auto raw = txn_->get(Table::kKeys, be64_key(generation));
  if (!raw.ok() && raw.status().code() == ENOENT) {
    return Status::Corruption("wrapped data key generation " + std::to_string(generation) + " is missing");
  }
  return raw;
}

Status Txn::put_wrapped_dek(uint32_t generation, std::string_view blob) {
  return txn_->put(Table::kKeys, be64_key(generation), blob);
}

Status Txn::delete_wrapped_dek(uint32_t generation) {
  return txn_->del(Table::kKeys, be64_key(generation), /*missing_ok=*/true);
}

Result<std::vector<uint32_t>> Txn::wrapped_generations() {
  std::vector<uint32_t> out;
  CMKFS_RETURN_IF_ERROR(txn_->scan(Table::kKeys, "", [&](std::string_view k, std::string_view) -> Result<bool> {
    if (k.size() == 8) out.push_back(static_cast<uint32_t>(get_be64(reinterpret_cast<const uint8_t*>(k.data()))));
    return true;
  }));
  return out;
}

namespace {
std::string name_key_key(uint32_t generation) { return "name" + be64_key(generation); }
std::string seal_count_key(uint32_t generation) { return "seals" + be64_key(generation); }
}  // namespace

Status Txn::put_name_key(uint32_t generation, const crypto::GcmKey& meta_key, crypto::Bytes name_key) {
  std::string key = name_key_key(generation);
  auto sealed = seal_record(meta_key, kTableKeys, key, {reinterpret_cast<const char*>(name_key.data()), name_key.size()});
  if (!sealed.ok()) return sealed.status();
  return txn_->put(Table::kKeys, key, *sealed);
}

Result<crypto::SecretBytes> Txn::name_key(uint32_t generation, const crypto::GcmKey& meta_key) {
  std::string key = name_key_key(generation);
  auto sealed = txn_->get(Table::kKeys, key);
  if (!sealed.ok()) return sealed.status();
  auto plain = open_record(meta_key, kTableKeys, key, *sealed);
  if (!plain.ok()) return plain.status();
  auto out = crypto::SecretBytes::copy_of(crypto::as_bytes(*plain));
  std::fill(plain->begin(), plain->end(), '\0');
  if (out.size() != crypto::kKeySize) return Status::Corruption("the carried name key is damaged");
  return out;
}

Status Txn::delete_name_key(uint32_t generation) {
  return txn_->del(Table::kKeys, name_key_key(generation), /*missing_ok=*/true);
}

Result<uint64_t> Txn::seal_count(uint32_t generation) {
  auto raw = txn_->get(Table::kSuper, seal_count_key(generation));
  if (!raw.ok()) return raw.status().code() == ENOENT ? Result<uint64_t>(uint64_t{0}) : raw.status();
  if (raw->size() != 8) return Status::Corruption("seal count record is damaged");
  return get_be64(reinterpret_cast<const uint8_t*>(raw->data()));
}

namespace {
std::string marker_key(std::string_view name) { return "marker:" + std::string(name); }
}  // namespace

Result<std::string> Txn::raw_marker(std::string_view name) { return txn_->get(Table::kSuper, marker_key(name)); }

Status Txn::put_raw_marker(std::string_view name, std::string_view value) {
  return txn_->put(Table::kSuper, marker_key(name), value);
}

Status Txn::delete_raw_marker(std::string_view name) {
  return txn_->del(Table::kSuper, marker_key(name), /*missing_ok=*/true);
}

Status Txn::put_seal_count(uint32_t generation, uint64_t count) {
  return txn_->put(Table::kSuper, seal_count_key(generation), be64_key(count));
}

// ---- inodes ----

Result<InodeRecord> Txn::get_inode(uint64_t ino) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  std::string key = be64_key(ino);
  auto sealed = txn_->get(Table::kInodes, key);
  if (!sealed.ok()) return sealed.status();
  auto plain = open_record(*keys_, kTableInodes, key, *sealed);
  if (!plain.ok()) return Status::Corruption("inode " + std::to_string(ino) + ": " + plain.status().message());
  return decode_inode(ino, *plain);
}

Status Txn::put_inode(const InodeRecord& rec) { return write_inode(rec, Put::kAlways); }

Status Txn::rewrite_inode(const InodeRecord& rec) { return write_inode(rec, Put::kReplace); }

Status Txn::write_inode(const InodeRecord& rec, Put how) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  changed_inodes_.push_back(rec.ino);
  std::string key = be64_key(rec.ino);
  auto sealed = seal_record(keys_->meta, kTableInodes, key, encode_inode(rec));
  store_->seals_.fetch_add(1, std::memory_order_relaxed);
  if (!sealed.ok()) return sealed.status();
  return txn_->put(Table::kInodes, key, *sealed, how);
}

Status Txn::delete_inode(uint64_t ino) {
  changed_inodes_.push_back(ino);
  return txn_->del(Table::kInodes, be64_key(ino));
}

Result<uint64_t> Txn::last_inode() {
  auto k = txn_->last_key(Table::kInodes);
  if (!k.ok()) return k.status().code() == ENOENT ? Result<uint64_t>(uint64_t{0}) : k.status();
  if (k->size() != 8) return Status::Corruption("inode table: malformed key");
  return get_be64(reinterpret_cast<const uint8_t*>(k->data()));
}

// ---- orphans ----

Status Txn::add_orphan(uint64_t ino) { return txn_->put(Table::kOrphans, be64_key(ino), ""); }

Status Txn::remove_orphan(uint64_t ino) {
  return txn_->del(Table::kOrphans, be64_key(ino), /*missing_ok=*/true);
}

namespace {
std::string pending_key(const Id128& id) { return "p" + std::string(reinterpret_cast<const char*>(id.data()), id.size()); }
std::string writing_key(uint64_t ino) { return "w" + be64_key(ino); }
constexpr size_t kPendingKeySize = 17, kWritingKeySize = 9;
// Whether `key` has the shape of a note: 'p' | file id, or 'w' | be64 ino.
bool is_note_key(std::string_view key) {
  return (key.size() == kPendingKeySize && key[0] == 'p') || (key.size() == kWritingKeySize && key[0] == 'w');
}
}  // namespace

// A note is sealed like any record (its key the AAD): what a mount does on one (remove an object,
// cut a file to what authenticates) is more than a forged one may make it do.
Status Txn::add_recovery_note(const std::string& key) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  auto sealed = seal_record(keys_->meta, kTableRecovery, key, "");
  store_->seals_.fetch_add(1, std::memory_order_relaxed);  // the meta key's nonce budget
  if (!sealed.ok()) return sealed.status();
  return txn_->put(Table::kRecovery, key, *sealed);
}

Status Txn::add_pending_removal(const Id128& file_id) { return add_recovery_note(pending_key(file_id)); }

Status Txn::remove_pending_removal(const Id128& file_id) {
  return txn_->del(Table::kRecovery, pending_key(file_id), /*missing_ok=*/true);
}

Status Txn::add_writing(uint64_t ino) { return add_recovery_note(writing_key(ino)); }

Status Txn::remove_writing(uint64_t ino) {
  return txn_->del(Table::kRecovery, writing_key(ino), /*missing_ok=*/true);
}

// Calls fn(key) for each recovery note whose key starts with `tag` and authenticates; the others
// are left to unauthentic_recovery_notes().
template <class Fn>
Status Txn::each_recovery(char tag, Fn&& fn) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  return txn_->scan(Table::kRecovery, std::string(1, tag), [&](std::string_view key, std::string_view value) -> Result<bool> {
    if (key.empty() || key[0] != tag) return false;
    if (is_note_key(key) && open_record(*keys_, kTableRecovery, key, value).ok()) fn(key.substr(1));
    return true;
  });
}

Result<size_t> Txn::unauthentic_recovery_notes(bool remove) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  std::vector<std::string> bad;
  CMKFS_RETURN_IF_ERROR(txn_->scan(Table::kRecovery, "", [&](std::string_view key, std::string_view value) -> Result<bool> {
    if (!is_note_key(key) || !open_record(*keys_, kTableRecovery, key, value).ok()) bad.emplace_back(key);
    return true;
  }));
  if (remove) {
    for (const auto& key : bad) CMKFS_RETURN_IF_ERROR(txn_->del(Table::kRecovery, key, /*missing_ok=*/true));
  }
  return bad.size();
}

Result<std::vector<Id128>> Txn::pending_removals() {
  std::vector<Id128> out;
  CMKFS_RETURN_IF_ERROR(each_recovery('p', [&](std::string_view k) {
    Id128 id{};
    std::copy(k.begin(), k.end(), id.begin());
    out.push_back(id);
  }));
  return out;
}

Result<std::vector<uint64_t>> Txn::writing() {
  std::vector<uint64_t> out;
  CMKFS_RETURN_IF_ERROR(each_recovery('w', [&](std::string_view k) {
    out.push_back(get_be64(reinterpret_cast<const uint8_t*>(k.data())));
  }));
  return out;
}

Result<std::vector<uint64_t>> Txn::orphans() {
  std::vector<uint64_t> out;
  CMKFS_RETURN_IF_ERROR(txn_->scan(Table::kOrphans, "", [&](std::string_view k, std::string_view) -> Result<bool> {
    if (k.size() == 8) out.push_back(get_be64(reinterpret_cast<const uint8_t*>(k.data())));
    return true;
  }));
  return out;
}

}  // namespace cmkfs::meta
