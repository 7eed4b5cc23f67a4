// A metadata engine in PostgreSQL (libpq): the same sealed tables as LMDB's, as rows
// (table, key, value) of one relation in the store's own schema, so that several hosts can share
// one store's metadata.
//
// Write transactions are serialized by a transaction-scoped advisory lock on the store, as LMDB
// serializes its writers: each runs READ COMMITTED after taking the lock, so it reads every
// earlier writer's commit and no other writer runs beside it, which makes the writers serializable
// without retries. (SERIALIZABLE with retry would need every caller's transaction to be safe to
// run twice; the filesystem's are not, they change in-memory state as they go.) Readers run
// REPEATABLE READ, READ ONLY: one snapshot, never a serialization failure.
//
// Within one process transactions run one at a time, reads too, as LMDB's run while a batch is
// open: the filesystem keeps records in memory as the authoritative copy, and one loaded by a
// reader from a snapshot older than a writer's commit would overwrite what the writer did.
// (A concurrent rename-over with readers made exactly that: a replaced inode back with its old
// link count.) A read begun inside another transaction on the same thread reads through it.
//
// Durability as LMDB's group commit gives it: a write commits without waiting for the server's
// WAL flush (synchronous_commit off: a crash of the server loses at most its last few hundred
// milliseconds, never tears anything; a crash of cmkfs loses nothing), except a transaction
// something waits on (when_durable: removing a deleted file's object), which waits. sync()
// waits for the flush of everything committed before it.
#include <libpq-fe.h>

#include <poll.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "crypto/base/coding.h"
#include "crypto/crypto.h"
#include "meta/engine.h"

namespace cmkfs::meta {

namespace {

// Transactions run one at a time per process; the others are sync() and when_durable beside them.
constexpr size_t kMaxConnections = 4;
constexpr int kFirstPage = 32;   // a directory lookup reads one window of 16 slots
constexpr int kLaterPage = 512;

struct PgResult {
  PGresult* r;
  explicit PgResult(PGresult* r) : r(r) {}
  ~PgResult() { PQclear(r); }
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
};

std::string pg_error(PGconn* c, std::string_view what) {
  std::string m = PQerrorMessage(c);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return "metadata in PostgreSQL: " + std::string(what) + ": " + m;
}

// A server starting up, or out of connection slots for a moment, is waited for (2 s at most).
// Over TCP a server that stops answering (a partition, a host gone) fails a connection's calls
// within about 30 s instead of TCP's own quarter of an hour: a follower's open waiting on its
// hold, a writer's commit. What the connection string sets itself wins (it is read after these).
Result<PGconn*> connect_plain(const std::string& conninfo) {
  static const char* const kKeys[] = {"keepalives",          "keepalives_idle", "keepalives_interval",
                                      "keepalives_count",    "tcp_user_timeout", "dbname", nullptr};
  const char* values[] = {"1", "10", "5", "3", "30000", conninfo.c_str(), nullptr};
  for (int attempt = 0;; ++attempt) {
    PGconn* c = PQconnectdbParams(kKeys, values, /*expand_dbname=*/1);
    if (PQstatus(c) == CONNECTION_OK) return c;
    std::string why = PQerrorMessage(c);
    bool transient = why.find("too many clients") != std::string::npos ||
                     why.find("the database system is starting up") != std::string::npos;
    if (!transient || attempt == 10) {
      Status s = Status::IOError(EIO, pg_error(c, "cannot connect"));
      PQfinish(c);
      return s;
    }
    PQfinish(c);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// The statements every connection prepares; $1 is the table number.
struct Statement {
  const char* name;
  const char* sql;  // %s: the schema
  int params;
};
constexpr Statement kStatements[] = {
    {"get", "SELECT v FROM %s.records WHERE tbl = $1 AND k = $2", 2},
    {"put", "INSERT INTO %s.records (tbl, k, v) VALUES ($1, $2, $3) ON CONFLICT (tbl, k) DO UPDATE SET v = EXCLUDED.v", 3},
    {"create", "INSERT INTO %s.records (tbl, k, v) VALUES ($1, $2, $3) ON CONFLICT (tbl, k) DO NOTHING", 3},
    {"del", "DELETE FROM %s.records WHERE tbl = $1 AND k = $2", 2},
    {"scan_from", "SELECT k, v FROM %s.records WHERE tbl = $1 AND k >= $2 ORDER BY k LIMIT $3", 3},
    {"scan_after", "SELECT k, v FROM %s.records WHERE tbl = $1 AND k > $2 ORDER BY k LIMIT $3", 3},
    {"last", "SELECT k FROM %s.records WHERE tbl = $1 ORDER BY k DESC LIMIT 1", 1},
};

class PostgresEngine;

// The transaction this thread has open: a read begun inside it reads through it (it must see
// what a write changed), and what waits for durability waits for a write's commit.
struct HeldTxn {
  const PostgresEngine* engine = nullptr;
  PGconn* conn = nullptr;
  std::vector<std::function<void()>>* on_commit = nullptr;  // null for a read
};
thread_local HeldTxn held;

class PostgresEngine final : public Engine {
 public:
  PostgresEngine(std::string conninfo, std::string schema, bool read_only)
      : conninfo_(std::move(conninfo)), schema_(std::move(schema)), read_only_(read_only) {
    txn_key_ = lock_key("transactions");
    writer_key_ = lock_key("writer");
  }
  ~PostgresEngine() override {
    stop_listening();
    for (PGconn* c : idle_) PQfinish(c);
    if (holder_ != nullptr) {  // its holds end with it, before the close returns (as the writer lock)
      PgResult r(PQexec(holder_, "SELECT pg_advisory_unlock_all()"));
      PQfinish(holder_);
    }
    if (writer_lock_ != nullptr) {
      // Released before the close returns: the server frees a closed session's locks only once
      // its backend has exited, after the close, and the next open (a remount, fsck) could find
      // the store still taken.
      PgResult r(PQexec(writer_lock_, ("SELECT pg_advisory_unlock(" + std::to_string(writer_key_) + ")").c_str()));
      PQfinish(writer_lock_);
    }
  }

  Status create();
  Status check();
  Result<PGconn*> take();
  void give_back(PGconn* c);

  Result<std::unique_ptr<EngineTxn>> begin(bool write) override;
  Status sync() override;
  void start_group_commit(std::chrono::microseconds) override {}
  // Inside a write transaction: after its commit, which then waits for the flush. Outside one:
  // what was committed did not wait for it, so it is flushed first; if that fails, fn never runs
  // (an object left behind is a leak fsck finds; one removed too early would be data lost).
  void when_durable(std::function<void()> fn) override {
    if (held.engine == this && held.on_commit != nullptr) return held.on_commit->push_back(std::move(fn));
    if (sync().ok()) fn();
  }
  Status reserve_space(uint64_t) override { return Status::Ok(); }
  int data_fd() const override { return -1; }
  Status copy_compacted(int) override { return Status(ENOTSUP, "PostgreSQL metadata is compacted in place"); }
  Status compact_in_place() override;
  Status lock_writer() override;
  bool shared() const override { return true; }
  Status listen(std::function<void(std::string_view)> fn) override;
  void stop_listening() override {
    stop_listening_ = true;
    if (listener_.joinable()) listener_.join();
  }
  Status hold(std::string_view object) override;
  Status release_hold(std::string_view object) override;
  Result<bool> held_elsewhere(std::string_view object) override;
  Status renew_holds() override;

  const std::string& schema() const { return schema_; }
  // For a write transaction of the store's writer: fails it if the writer lock's session is gone
  // (a server restart, a terminated backend), before another mount can take the store.
  std::string writer_check() const {
    if (writer_lock_ == nullptr) return "";
    auto key = static_cast<uint64_t>(writer_key_);
    return "; DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = " +
           std::to_string(PQbackendPID(writer_lock_)) + " AND classid = " + std::to_string(key >> 32) +
           " AND objid = " + std::to_string(key & 0xffffffffu) +
           " AND objsubid = 1) THEN RAISE EXCEPTION 'this mount no longer holds the store''s writer lock (its "
           "session ended): unmount it'; END IF; END$$";
  }
  // An advisory lock's key: 64 bits of a keyed hash of what it serializes and the schema (which
  // names the store), so that no two stores' or purposes' keys meet.
  int64_t lock_key(std::string_view purpose) const {
    std::string what = std::string(purpose) + ":" + schema_;
    static constexpr char kLockKey[] = "cmkfs advisory lock";
    auto mac = crypto::hmac_sha256(crypto::as_bytes(std::string_view(kLockKey)), crypto::as_bytes(what));
    return static_cast<int64_t>(get_be64(mac.data()));
  }
  std::mutex& txn_mu() { return txn_mu_; }
  // REQUIRES: txn_mu_. A write's COMMIT whose connection broke may or may not have landed, and
  // the records in memory no longer say which: this mount writes nothing more.
  void lost_commit(const Status& why) {
    lost_commit_ = Status::IOError(EIO, why.message() + " (the connection broke during a commit, which may have "
                                                        "landed or not; this mount writes nothing more: unmount it "
                                                        "and mount again)");
  }
  bool read_only() const { return read_only_; }

 private:
  Result<PGconn*> connect();

  // REQUIRES: holds_mu_. The session the holds are locks of, connected again if it broke, every
  // hold then taken again.
  Status holder_session();
  int64_t hold_key(std::string_view object) const { return lock_key("hold:" + std::string(object)); }

  const std::string conninfo_;
  const std::string schema_;
  const bool read_only_;
  std::mutex holds_mu_;
  PGconn* holder_ = nullptr;                        // guarded by holds_mu_
  std::chrono::steady_clock::time_point holder_retry_;  // no connect before; guarded by holds_mu_
  std::map<std::string, int, std::less<>> holds_;  // object -> holds here; guarded by holds_mu_
  int64_t txn_key_, writer_key_;
  PGconn* writer_lock_ = nullptr;  // the session holding the writer lock
  std::mutex txn_mu_;              // held for each transaction's life (see the top)
  Status lost_commit_;             // guarded by txn_mu_
  std::thread listener_;
  std::atomic<bool> stop_listening_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PGconn*> idle_;  // guarded by mu_
  size_t open_ = 0;            // connections made and not dropped, guarded by mu_
};

Status exec(PGconn* c, const std::string& sql) {
  PgResult r(PQexec(c, sql.c_str()));
  auto st = PQresultStatus(r.r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Status::IOError(EIO, pg_error(c, sql.substr(0, 40)));
  return Status::Ok();
}

class PostgresTxn final : public EngineTxn {
 public:
  PostgresTxn(PostgresEngine* engine, PGconn* conn, bool write, std::unique_lock<std::mutex> turn,
              bool autocommit = false)
      : engine_(engine),
        conn_(conn),
        write_(write),
        borrowed_(!turn.owns_lock()),
        autocommit_(autocommit),
        turn_(std::move(turn)) {
    if (!borrowed_) held = {engine, conn, write_ ? &on_commit_ : nullptr};
  }
  ~PostgresTxn() override {
    if (conn_ == nullptr || borrowed_) return;
    held = {};
    // A connection whose rollback fails is dropped, not reused half-way through a transaction.
    if (autocommit_ || exec(conn_, "ROLLBACK").ok()) engine_->give_back(conn_);
    else engine_->give_back(nullptr), PQfinish(conn_);
  }

  Result<std::string> get(Table t, std::string_view key) override {
    auto r = run("get", t, {key});
    if (!r.ok()) return r.status();
    if (PQntuples((*r)->r) == 0) return Status::NotFound("no such record");
    return value((*r)->r, 0, 0);
  }
  Status put(Table t, std::string_view key, std::string_view v, bool create_only) override {
    auto r = run(create_only ? "create" : "put", t, {key, v});
    if (!r.ok()) return r.status();
    if (create_only && std::strcmp(PQcmdTuples((*r)->r), "0") == 0) return Status::Exists("record exists");
    return Status::Ok();
  }
  Status del(Table t, std::string_view key) override {
    auto r = run("del", t, {key});
    if (!r.ok()) return r.status();
    if (std::strcmp(PQcmdTuples((*r)->r), "0") == 0) return Status::NotFound("no such record");
    return Status::Ok();
  }
  Status scan(Table t, std::string_view from, const Visit& fn) override {
    std::string next(from);
    bool first = true;
    for (;;) {
      std::string limit = std::to_string(first ? kFirstPage : kLaterPage);
      auto r = run(first ? "scan_from" : "scan_after", t, {next, limit}, /*last_is_text=*/true);
      if (!r.ok()) return r.status();
      int n = PQntuples((*r)->r);
      for (int i = 0; i < n; ++i) {
        std::string k = value((*r)->r, i, 0), v = value((*r)->r, i, 1);
        Result<bool> more = fn(k, v);
        if (!more.ok()) return more.status();
        if (!*more) return Status::Ok();
        if (i == n - 1) next = std::move(k);
      }
      if (n < std::stoi(limit)) return Status::Ok();
      first = false;
    }
  }
  // Sent with the COMMIT, in its round trip: the payload is hex digits and ':' only.
  Status notify(std::string_view payload) override {
    if (payload.find_first_not_of("0123456789abcdef:") != std::string_view::npos) {
      return Status::InvalidArgument("change feed payload: unexpected characters");
    }
    notifies_ += "SELECT pg_notify('" + engine_->schema() + "', '" + std::string(payload) + "'); ";
    return Status::Ok();
  }
  Result<std::string> last_key(Table t) override {
    auto r = run("last", t, {});
    if (!r.ok()) return r.status();
    if (PQntuples((*r)->r) == 0) return Status::NotFound("empty table");
    return value((*r)->r, 0, 0);
  }
  Status commit(const std::function<void()>& applied) override {
    if (borrowed_) {  // a read: the enclosing transaction commits
      if (applied) applied();
      return Status::Ok();
    }
    PGconn* c = conn_;
    conn_ = nullptr;
    held = {};
    // What waits on this commit must not run before it is on the server's disk. A read without
    // a transaction of its own (autocommit_) has nothing to end.
    Status s = autocommit_ ? Status::Ok()
                           : exec(c, notifies_ + (on_commit_.empty() ? "COMMIT" : "SET LOCAL synchronous_commit = on; COMMIT"));
    if (!s.ok() && write_ && PQstatus(c) != CONNECTION_OK) engine_->lost_commit(s);
    if (s.ok()) engine_->give_back(c);
    else engine_->give_back(nullptr), PQfinish(c);
    if (s.ok() && applied) applied();
    turn_ = {};  // the next transaction may start; what waited on this one runs outside it
    if (!s.ok()) return s;
    for (auto& fn : on_commit_) fn();
    return s;
  }

 private:
  // Runs prepared statement `name` with the table number and `args` (binary, but for a LIMIT).
  Result<std::unique_ptr<PgResult>> run(const char* name, Table t, std::vector<std::string_view> args,
                                        bool last_is_text = false) {
    std::string table = std::to_string(static_cast<int>(t));
    std::vector<const char*> values{table.c_str()};
    std::vector<int> lengths{static_cast<int>(table.size())}, formats{0};
    for (size_t i = 0; i < args.size(); ++i) {
      values.push_back(args[i].data());
      lengths.push_back(static_cast<int>(args[i].size()));
      formats.push_back(last_is_text && i + 1 == args.size() ? 0 : 1);
    }
    std::string limit_text;
    if (last_is_text) {  // text parameters are NUL-terminated
      limit_text = std::string(args.back());
      values.back() = limit_text.c_str();
    }
    auto r = std::make_unique<PgResult>(PQexecPrepared(conn_, name, static_cast<int>(values.size()), values.data(),
                                                       lengths.data(), formats.data(), /*resultFormat=*/1));
    auto st = PQresultStatus(r->r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Status::IOError(EIO, pg_error(conn_, name));
    return r;
  }
  static std::string value(PGresult* r, int row, int col) {
    return std::string(PQgetvalue(r, row, col), static_cast<size_t>(PQgetlength(r, row, col)));
  }

  PostgresEngine* engine_;
  PGconn* conn_;
  bool write_, borrowed_;
  bool autocommit_ = false;  // a read of the store's one writer: each statement on its own
  std::string notifies_;     // pg_notify calls sent with the COMMIT
  std::unique_lock<std::mutex> turn_;  // the engine's txn_mu, unless borrowed
  std::vector<std::function<void()>> on_commit_;
};

Result<PGconn*> PostgresEngine::connect() {
  auto made = connect_plain(conninfo_);
  if (!made.ok()) return made.status();
  PGconn* c = *made;
  for (const Statement& st : kStatements) {
    std::vector<char> sql(std::strlen(st.sql) + schema_.size() + 1);
    std::snprintf(sql.data(), sql.size(), st.sql, schema_.c_str());
    PgResult r(PQprepare(c, st.name, sql.data(), st.params, nullptr));
    if (PQresultStatus(r.r) != PGRES_COMMAND_OK) {
      Status s = Status::IOError(EIO, pg_error(c, std::string("preparing ") + st.name));
      PQfinish(c);
      return s;
    }
  }
  return c;
}

Result<PGconn*> PostgresEngine::take() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !idle_.empty() || open_ < kMaxConnections; });
  if (!idle_.empty()) {
    PGconn* c = idle_.back();
    idle_.pop_back();
    if (PQstatus(c) == CONNECTION_OK) return c;
    PQfinish(c);  // the server went away: a fresh one below
    --open_;
  }
  ++open_;
  lock.unlock();
  auto c = connect();
  if (!c.ok()) give_back(nullptr);
  return c;
}

void PostgresEngine::give_back(PGconn* c) {
  std::lock_guard<std::mutex> g(mu_);
  if (c != nullptr) idle_.push_back(c);
  else --open_;
  cv_.notify_one();
}

Result<std::unique_ptr<EngineTxn>> PostgresEngine::begin(bool write) {
  if (held.engine == this) {
    if (write) return Status(EDEADLK, "a write transaction inside another transaction");
    return std::unique_ptr<EngineTxn>(new PostgresTxn(this, held.conn, false, std::unique_lock<std::mutex>()));
  }
  if (write && read_only_) return Status(EROFS, "the metadata is open read-only");
  std::unique_lock<std::mutex> turn(txn_mu_);
  if (write && !lost_commit_.ok()) return lost_commit_;
  auto c = take();
  if (!c.ok()) return c.status();
  // The store's one writer reads without a transaction: nobody else writes what it reads (the
  // writer lock; key commands beside it write single records), and its own transactions run
  // one at a time. Two round trips fewer per read.
  if (!write && writer_lock_ != nullptr) {
    return std::unique_ptr<EngineTxn>(new PostgresTxn(this, *c, false, std::move(turn), /*autocommit=*/true));
  }
  Status s = write ? exec(*c, "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit = off; "
                                  "SELECT pg_advisory_xact_lock(" + std::to_string(txn_key_) + ")" + writer_check())
                   : exec(*c, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
  if (!s.ok()) {
    give_back(nullptr);
    PQfinish(*c);
    return s;
  }
  return std::unique_ptr<EngineTxn>(new PostgresTxn(this, *c, write, std::move(turn)));
}

Status PostgresEngine::create() {
  auto c = connect_plain(conninfo_);
  if (!c.ok()) return c.status();
  Status s = exec(*c, "CREATE SCHEMA IF NOT EXISTS " + schema_ + "; CREATE TABLE IF NOT EXISTS " + schema_ +
                          ".records (tbl smallint NOT NULL, k bytea NOT NULL, v bytea NOT NULL, PRIMARY KEY (tbl, k))");
  PQfinish(*c);
  return s;
}

// A commit that waits for the WAL's flush waits for every commit before it (the WAL is one
// sequence): an empty transaction given an id is enough.
Status PostgresEngine::sync() {
  if (held.engine == this) return Status(EDEADLK, "sync inside a transaction");
  if (read_only_) return Status::Ok();
  auto c = take();
  if (!c.ok()) return c.status();
  Status s = exec(*c, "BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT");
  if (s.ok()) give_back(*c);
  else give_back(nullptr), PQfinish(*c);
  return s;
}

Status PostgresEngine::lock_writer() {
  if (writer_lock_ != nullptr) return Status::Ok();
  auto c = connect_plain(conninfo_);
  if (!c.ok()) return c.status();
  // A session lock (not the transactions' key): held until this connection closes, which the
  // server notices when the process dies.
  // Named, so that pg_stat_activity shows which backend holds which store.
  PgResult r(PQexec(*c, ("SET application_name = 'cmkfs writer " + schema_ + "'; SELECT pg_try_advisory_lock(" +
                         std::to_string(writer_key_) + ")")
                            .c_str()));
  if (PQresultStatus(r.r) != PGRES_TUPLES_OK || PQntuples(r.r) != 1 || PQnfields(r.r) != 1) {
    Status s = Status::IOError(EIO, pg_error(*c, "taking the writer lock"));
    PQfinish(*c);
    return s;
  }
  if (std::string_view(PQgetvalue(r.r, 0, 0)) != "t") {
    PQfinish(*c);
    return Status(EBUSY, "the store is mounted (or checked) by another cmkfs on a host sharing its metadata");
  }
  writer_lock_ = *c;
  return Status::Ok();
}

// LISTEN on a connection of its own; a lost connection is made again, and fn(kFeedMissed) says that
// payloads may have been missed meanwhile. It is also the first call: what the caller loaded
// before LISTEN took effect may be older than commits it will never hear of.
Status PostgresEngine::listen(std::function<void(std::string_view)> fn) {
  if (listener_.joinable()) return Status::Exists("already listening");
  auto first = connect_plain(conninfo_);
  if (!first.ok()) return first.status();
  CMKFS_RETURN_IF_ERROR(exec(*first, "LISTEN " + schema_));
  listener_ = std::thread([this, fn = std::move(fn), c = *first]() mutable {
    fn(MetaStore::kFeedMissed);
    while (!stop_listening_) {
      if (c == nullptr || PQstatus(c) != CONNECTION_OK) {
        if (c != nullptr) PQfinish(c);
        c = nullptr;
        std::this_thread::sleep_for(std::chrono::seconds(1));
        auto again = connect_plain(conninfo_);
        if (!again.ok() || !exec(*again, "LISTEN " + schema_).ok()) continue;
        c = *again;
        fn(MetaStore::kFeedMissed);  // what was sent meanwhile is lost
        continue;
      }
      pollfd p{PQsocket(c), POLLIN, 0};
      if (::poll(&p, 1, 200) < 0 && errno != EINTR) continue;
      if (PQconsumeInput(c) == 0) continue;  // the status check above reconnects
      while (PGnotify* n = PQnotifies(c)) {
        fn(n->extra);
        PQfreemem(n);
      }
    }
    if (c != nullptr) PQfinish(c);
  });
  return Status::Ok();
}

// Holds are shared advisory locks, one per object, taken on a session of the follower's own:
// the server drops them when that session ends, however the follower ends, and the writer's
// check is one try of the same lock exclusively (released with its statement). No table to
// clean, no process ids to trust. A lock takes a slot of the server's lock table
// (max_locks_per_transaction x max_connections, 6,400 by default), so a process holds at most
// kMaxHolds objects; past that its opens are not held (logged). The writer needs slots too.
namespace {
constexpr size_t kMaxHolds = 256;
bool object_name(std::string_view s) {
  return !s.empty() && s.size() <= 64 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}
}  // namespace

Status PostgresEngine::holder_session() {
  if (holder_ != nullptr && PQstatus(holder_) == CONNECTION_OK) return Status::Ok();
  if (holder_ != nullptr) PQfinish(holder_);
  holder_ = nullptr;
  // A server that did not answer is asked again a second later, not by every open meanwhile
  // (they wait on holds_mu_ behind the attempt).
  auto now = std::chrono::steady_clock::now();
  if (now < holder_retry_) return Status::Unavailable("the database did not answer a moment ago");
  auto c = connect_plain(conninfo_);
  if (!c.ok()) {
    holder_retry_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    return c.status();
  }
  std::string sql = "SELECT 1";
  for (const auto& [object, n] : holds_) sql += ", pg_advisory_lock_shared(" + std::to_string(hold_key(object)) + ")";
  Status s = exec(*c, sql);
  if (!s.ok()) {
    PQfinish(*c);
    return s;
  }
  holder_ = *c;
  return Status::Ok();
}

Status PostgresEngine::hold(std::string_view object) {
  if (!object_name(object)) return Status::InvalidArgument("hold: not an object name");
  std::lock_guard<std::mutex> g(holds_mu_);
  auto it = holds_.find(object);
  if (it != holds_.end()) return ++it->second, Status::Ok();
  if (holds_.size() >= kMaxHolds) return Status(ENOSPC, "this process holds " + std::to_string(kMaxHolds) + " objects already");
  Status s = holder_session();
  if (s.ok()) s = exec(holder_, "SELECT pg_advisory_lock_shared(" + std::to_string(hold_key(object)) + ")");
  if (s.ok()) holds_.emplace(std::string(object), 1);
  return s;
}

Status PostgresEngine::release_hold(std::string_view object) {
  std::lock_guard<std::mutex> g(holds_mu_);
  auto it = holds_.find(object);
  if (it == holds_.end() || --it->second > 0) return Status::Ok();
  int64_t key = hold_key(it->first);
  holds_.erase(it);
  if (holder_ == nullptr || PQstatus(holder_) != CONNECTION_OK) return Status::Ok();  // gone with its session
  return exec(holder_, "SELECT pg_advisory_unlock_shared(" + std::to_string(key) + ")");
}

// A round trip finds a connection that died quietly; holder_session() then takes every hold again.
Status PostgresEngine::renew_holds() {
  std::lock_guard<std::mutex> g(holds_mu_);
  if (holds_.empty()) return Status::Ok();
  if (holder_ != nullptr && exec(holder_, "SELECT 1").ok()) return Status::Ok();
  return holder_session();
}

Result<bool> PostgresEngine::held_elsewhere(std::string_view object) {
  if (!object_name(object)) return Status::InvalidArgument("holds: not an object name");
  auto c = take();
  if (!c.ok()) return c.status();
  PgResult r(PQexec(*c, ("SELECT pg_try_advisory_xact_lock(" + std::to_string(hold_key(object)) + ")").c_str()));
  if (PQresultStatus(r.r) != PGRES_TUPLES_OK || PQntuples(r.r) != 1 || PQnfields(r.r) != 1) {
    Status s = Status::IOError(EIO, pg_error(*c, "checking the holds"));
    give_back(*c);  // a failed statement outside a transaction leaves the connection usable
    return s;
  }
  bool got = PQgetvalue(r.r, 0, 0)[0] == 't';
  give_back(*c);
  return !got;
}

Status PostgresEngine::compact_in_place() {
  auto c = connect_plain(conninfo_);
  if (!c.ok()) return c.status();
  Status s = exec(*c, "VACUUM FULL " + schema_ + ".records");
  PQfinish(*c);
  return s;
}

}  // namespace

bool valid_schema_name(std::string_view s) {
  if (s.empty() || s.size() > 63 || !(s[0] >= 'a' && s[0] <= 'z')) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}


Status check_conninfo(const std::string& conninfo) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  // libpq's message quotes the part it could not parse, which may be the password.
  if (error != nullptr) PQfreemem(error);
  if (options == nullptr) {
    return Status::InvalidArgument("the PostgreSQL connection string is malformed (not shown: it may hold a password)");
  }
  PQconninfoFree(options);
  return Status::Ok();
}

Result<std::unique_ptr<Engine>> open_postgres_engine(const std::string& conninfo, const std::string& schema,
                                                     bool create, bool read_only) {
  if (!valid_schema_name(schema)) return Status::InvalidArgument("bad PostgreSQL schema name '" + schema + "'");
  CMKFS_RETURN_IF_ERROR(check_conninfo(conninfo));
  auto engine = std::make_unique<PostgresEngine>(conninfo, schema, read_only);
  if (create) CMKFS_RETURN_IF_ERROR(engine->create());
  // The first connection proves the server, the credentials and the schema.
  auto c = engine->take();
  if (!c.ok()) return c.status();
  engine->give_back(*c);
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace cmkfs::meta
