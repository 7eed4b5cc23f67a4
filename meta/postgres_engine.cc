// A metadata engine in PostgreSQL (libpq): the same sealed tables as LMDB's, as rows
// (table, key, value) of one relation in the store's own schema, so that several hosts can share
// one store's metadata.
//
// Write transactions are serialized by a transaction-scoped advisory lock on the store, as LMDB
// serializes its writers: each runs READ COMMITTED after taking the lock, so it reads every
// earlier writer's commit and no other writer runs beside it, which makes the writers serializable
// without retries. (SERIALIZABLE with retry would need every caller's transaction to be safe to
// run twice; the filesystem's are not, they change in-memory state as they go.) Readers run
// REPEATABLE READ, READ ONLY: one snapshot, never a serialization failure. The store's writer
// writes on the session that holds its writer lock, so that no write lands once that lock is gone.
//
// Statements are pipelined (Pipe): a transaction waits for the server at each read and at its
// end, not at each statement; what a write's reply would have said (EEXIST, ENOENT, an error)
// fails the transaction at its next read or at the COMMIT.
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
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "crypto/base/coding.h"
#include "crypto/base/hex.h"
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
// within about 30 s instead of TCP's own quarter of an hour (a follower's open waiting on its
// hold, a writer's commit), and a connection attempt within 10 s (the writer taking its lock
// back holds every transaction of the mount meanwhile). What the connection string sets itself
// wins (it is read after these).
Result<PGconn*> connect_plain(const std::string& conninfo) {
  static const char* const kKeys[] = {"keepalives",       "keepalives_idle", "keepalives_interval", "keepalives_count",
                                      "tcp_user_timeout", "connect_timeout", "dbname",              nullptr};
  const char* values[] = {"1", "10", "5", "3", "30000", "10", conninfo.c_str(), nullptr};
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
    {"create", "INSERT INTO %s.records (tbl, k, v) VALUES ($1, $2, $3)", 3},  // a key there: unique_violation
    {"replace", "UPDATE %s.records SET v = $3 WHERE tbl = $1 AND k = $2", 3},
    {"notify", "SELECT pg_notify($1, $2)", 2},
    // Fails (division_by_zero) when there was nothing to delete, so that the server skips what
    // follows it, the COMMIT included, with no round trip to check; "erase" may find nothing.
    {"del", "WITH d AS (DELETE FROM %s.records WHERE tbl = $1 AND k = $2 RETURNING 1) SELECT 1 / count(*) FROM d", 2},
    {"erase", "DELETE FROM %s.records WHERE tbl = $1 AND k = $2", 2},
    {"scan_from", "SELECT k, v FROM %s.records WHERE tbl = $1 AND k >= $2 ORDER BY k LIMIT $3", 3},
    {"scan_after", "SELECT k, v FROM %s.records WHERE tbl = $1 AND k > $2 ORDER BY k LIMIT $3", 3},
    {"last", "SELECT k FROM %s.records WHERE tbl = $1 ORDER BY k DESC LIMIT 1", 1},
};

// A statement's parameters, copied (text ones must end in NUL).
class Params {
 public:
  Params() = default;
  Params(Params&&) = default;  // a deque's elements stay where they are: values_ stays right
  Params(const Params&) = delete;
  Params& operator=(const Params&) = delete;
  Params& text(std::string_view v) { return add(v, 0); }
  Params& binary(std::string_view v) { return add(v, 1); }
  Params& table(Table t) { return text(std::to_string(static_cast<int>(t))); }
  int size() const { return static_cast<int>(values_.size()); }
  const char* const* values() const { return values_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  Params& add(std::string_view v, int format) {
    owned_.emplace_back(v);
    values_.push_back(owned_.back().c_str());
    lengths_.push_back(static_cast<int>(v.size()));
    formats_.push_back(format);
    return *this;
  }
  std::deque<std::string> owned_;  // stays where it is as it grows
  std::vector<const char*> values_;
  std::vector<int> lengths_, formats_;
};

// Runs prepared statement `name` at once (outside pipeline mode), binary results.
std::unique_ptr<PgResult> exec_prepared(PGconn* c, const char* name, const Params& p) {
  return std::make_unique<PgResult>(PQexecPrepared(c, name, p.size(), p.values(), p.lengths(), p.formats(), 1));
}

// A transaction's connection in libpq's pipeline mode. A statement whose reply nothing needs at
// once (BEGIN, a write, a notify) is queued and goes to the server with the next one that needs
// its reply (a read, the COMMIT): a transaction costs a round trip per read and one to end, not
// one per statement (a create went from 6 to 2). A statement that fails makes the server skip
// everything after it up to the sync, the COMMIT included, and fails the transaction from then on.
class Pipe {
 public:
  explicit Pipe(PGconn* c) : c_(c) {}
  PGconn* conn() const { return c_; }
  const Status& failed() const { return failed_; }
  bool broken() const { return broken_; }  // the connection cannot be used again

  Status enter() {
    if (PQenterPipelineMode(c_) == 1) return Status::Ok();
    broken_ = true;
    return Status::IOError(EIO, pg_error(c_, "entering pipeline mode"));
  }
  Status queue(const char* prepared, const Params& p) {
    CMKFS_RETURN_IF_ERROR(make_room());
    return sent(PQsendQueryPrepared(c_, prepared, p.size(), p.values(), p.lengths(), p.formats(), 1), prepared);
  }
  // One statement, no parameters; `sql` outlives the transaction (a literal, the engine's).
  Status queue_sql(const char* sql) {
    CMKFS_RETURN_IF_ERROR(make_room());
    return sent(PQsendQueryParams(c_, sql, 0, nullptr, nullptr, nullptr, nullptr, 1), sql);
  }
  // Sends what is queued and reads every reply: the last statement's result, or the first
  // failure (an earlier statement's ENOENT or EEXIST as EIO: it is not the caller's answer).
  // answer: the last statement is the caller's (a read's), whose ENOENT or EEXIST is its answer.
  Result<std::unique_ptr<PgResult>> settle(bool answer = true);
  // After a failure too: ends the server's transaction, then pipeline mode.
  Status roll_back() {
    if (!queued_.empty()) (void)settle(false);  // whatever they said: the transaction is going
    if (broken_) return Status::IOError(EIO, "connection lost");
    failed_ = Status::Ok();
    Status s = queue_sql("ROLLBACK");
    if (s.ok()) s = settle().status();
    return s.ok() ? leave() : s;
  }
  Status leave() {
    if (PQexitPipelineMode(c_) == 1) return Status::Ok();
    broken_ = true;
    return Status::IOError(EIO, pg_error(c_, "leaving pipeline mode"));
  }

 private:
  // A server this far behind on replies would stop reading while we write: settled first, so
  // that the statement whose reply a caller waits for is always the last one queued.
  static constexpr size_t kMaxQueued = 128;
  Status make_room() {
    if (!failed_.ok()) return failed_;
    return queued_.size() < kMaxQueued ? Status::Ok() : settle(/*answer=*/false).status();
  }
  Status sent(int ok, const char* what) {
    if (ok != 1) return fail(Status::IOError(EIO, pg_error(c_, what)), true);
    queued_.push_back(what);
    return Status::Ok();
  }
  Status fail(Status s, bool connection) {
    broken_ = broken_ || connection;
    queued_.clear();
    return failed_ = std::move(s);
  }

  PGconn* c_;
  std::vector<const char*> queued_;  // for errors: each statement's name or SQL
  bool broken_ = false;
  Status failed_;
};

Result<std::unique_ptr<PgResult>> Pipe::settle(bool answer) {
  if (!failed_.ok()) return failed_;
  if (PQpipelineSync(c_) != 1) return fail(Status::IOError(EIO, pg_error(c_, "sending")), true);
  std::unique_ptr<PgResult> last;
  Status first;
  for (size_t i = 0; i < queued_.size(); ++i) {
    std::string_view what = std::string_view(queued_[i]).substr(0, 40);  // the name, or the SQL's start
    PGresult* r = PQgetResult(c_);
    if (r == nullptr) return fail(Status::IOError(EIO, pg_error(c_, what)), true);
    last = std::make_unique<PgResult>(r);
    if (PGresult* extra = PQgetResult(c_)) {  // one statement, one result, then none
      PQclear(extra);
      return fail(Status::IOError(EIO, pg_error(c_, what)), true);
    }
    auto st = PQresultStatus(r);
    if (!first.ok() || st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) continue;  // after a failure: aborted
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    std::string why = PQresultErrorMessage(r);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    std::string_view code = state != nullptr ? state : "";
    if (code == "23505") first = Status::Exists("record exists");                      // unique_violation
    else if (code == "22012" && what == "del") first = Status::NotFound("no such record");  // del's 1 / count(*)
    else first = Status::IOError(EIO, "metadata in PostgreSQL: " + std::string(what) + ": " + why);
    if ((!answer || i + 1 != queued_.size()) && first.code() != EIO) {
      first = Status::IOError(EIO, "metadata in PostgreSQL: an earlier write of the transaction failed: " +
                                       std::string(what) + ": " + first.message());
    }
  }
  PgResult sync(PQgetResult(c_));
  if (sync.r == nullptr || PQresultStatus(sync.r) != PGRES_PIPELINE_SYNC) {
    return fail(Status::IOError(EIO, pg_error(c_, "reading the replies")), true);
  }
  queued_.clear();
  if (!first.ok()) return fail(std::move(first), false);
  return last;
}

class PostgresEngine;

constexpr std::string_view kWriterMarkKey = "writer";  // in Table::kSuper
// A restart's shutdown checkpoint and recovery fit in this.
constexpr auto kSettleCommitFor = std::chrono::seconds(60);

// The transaction this thread has open: a read begun inside it reads through it (it must see
// what a write changed), and what waits for durability waits for a write's commit.
struct HeldTxn {
  const PostgresEngine* engine = nullptr;
  PGconn* conn = nullptr;
  Pipe* pipe = nullptr;  // null: the writer's read, each statement on its own
  std::vector<std::function<void()>>* on_commit = nullptr;  // null for a read
  bool applying = false;  // in a commit's `applied`, still holding the turn: no transaction begins
};
thread_local HeldTxn held;

class PostgresEngine final : public Engine {
 public:
  PostgresEngine(std::string conninfo, std::string schema, bool read_only)
      : conninfo_(std::move(conninfo)), schema_(std::move(schema)), read_only_(read_only) {
    txn_key_ = lock_key("transactions");
    txn_lock_sql_ = "SELECT pg_advisory_xact_lock(" + std::to_string(txn_key_) + ")";
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
  void release_mapped_pages() override {}
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
    if (!lost_commit_.ok()) return;
    lost_commit_ = Status::IOError(EIO, why.message() + " (the connection broke during a commit, which may have "
                                                        "landed or not; this mount writes nothing more: unmount it "
                                                        "and mount again)");
  }
  // REQUIRES: txn_mu_. The writer lock's session, which the store's writer writes on, broke: the
  // server dropped the lock with it. Writes fail until the lock is taken back (resume_writer).
  void lost_writer_session(const Status& why);
  // REQUIRES: txn_mu_. Settles a writer's COMMIT whose session broke before its reply: OK if it
  // landed, else an error; once the lock is back (the mount's transactions wait meanwhile, as
  // they would for a server restarting), or after kSettleCommitFor a lost commit (lost_commit).
  Status settle_lost_commit(const Status& why);
  // REQUIRES: txn_mu_. Queues the writer's mark of this transaction.
  Status queue_writer_mark(Pipe& p) { return p.queue("put", writer_mark(commits_ + 1)); }
  void committed_on_writer_session() { ++commits_; }  // REQUIRES: txn_mu_
  bool read_only() const { return read_only_; }

 private:
  Result<PGconn*> connect();
  // REQUIRES: txn_mu_. After the writer's session broke: takes the writer lock again on a new
  // one and reads the writer mark. EAGAIN: not now (no server, or the old session's lock not yet
  // gone); another writer's mark: set as lost_commit_ (another mount wrote meanwhile).
  Result<uint64_t> retake_writer_lock();
  // REQUIRES: txn_mu_. Before a writer's write: notices a session the server ended, and takes the
  // lock back once nobody else wrote meanwhile (at most once a second).
  Status resume_writer();
  // The put of the writer mark: "<writer id>:<commits>".
  Params writer_mark(uint64_t commits) const {
    Params mark;
    mark.table(Table::kSuper).binary(kWriterMarkKey).binary(writer_id_ + ":" + std::to_string(commits));
    return mark;
  }
  // On `c` (its own session, a new one): SET application_name, then pg_try_advisory_lock on the
  // writer key; whether it is taken.
  Result<bool> try_writer_lock(PGconn* c) const;

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
  std::string txn_lock_sql_;  // a write transaction's first statement after BEGIN
  // The session holding the writer lock. The writer's write transactions run on it: should it
  // end (a server restart, a terminated backend, a network cut), they fail with it, before
  // another mount can take the store, with no check of the lock in each transaction.
  PGconn* writer_lock_ = nullptr;  // null after it broke, until taken back
  bool writer_ = false;            // lock_writer succeeded: writes go on writer_lock_ only
  // The writer mark: a record this mount rewrites in each of its write transactions, naming it
  // and counting its commits. A session taken back after a break reads it to know whether
  // another mount wrote meanwhile and whether a COMMIT cut off before its reply landed.
  std::string writer_id_;
  uint64_t commits_ = 0;  // guarded by txn_mu_
  Status writer_lost_;    // guarded by txn_mu_: why writer_lock_ is null
  std::chrono::steady_clock::time_point writer_retry_;  // guarded by txn_mu_
  std::mutex txn_mu_;              // held for each transaction's life (see the top)
  Status lost_commit_;             // guarded by txn_mu_; not OK: this mount writes nothing more
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
  // A transaction of its own, its statements pipelined; on_writer_session: on the writer lock's
  // session, which the engine keeps.
  PostgresTxn(PostgresEngine* engine, std::unique_ptr<Pipe> pipe, bool write, std::unique_lock<std::mutex> turn,
              bool on_writer_session)
      : engine_(engine), conn_(pipe->conn()), pipe_(pipe.get()), own_pipe_(std::move(pipe)), write_(write),
        on_writer_session_(on_writer_session), turn_(std::move(turn)) {
    held = {engine, conn_, pipe_, write_ ? &on_commit_ : nullptr};
  }
  // A read of the store's one writer: each statement on its own, no transaction to end.
  PostgresTxn(PostgresEngine* engine, PGconn* conn, std::unique_lock<std::mutex> turn)
      : engine_(engine), conn_(conn), turn_(std::move(turn)) {
    held = {engine, conn_, nullptr, nullptr};
  }
  // A read inside the transaction this thread has open: through it (it ends first).
  PostgresTxn(PostgresEngine* engine, const HeldTxn& outer)
      : engine_(engine), conn_(outer.conn), pipe_(outer.pipe), borrowed_(true) {}
  ~PostgresTxn() override {
    if (conn_ == nullptr || borrowed_) return;
    held = {};
    end_connection(/*roll_back=*/own_pipe_ != nullptr);
  }

  Result<std::string> get(Table t, std::string_view key) override {
    auto r = read("get", Params().table(t).binary(key));
    if (!r.ok()) return r.status();
    if (PQntuples((*r)->r) == 0) return Status::NotFound("no such record");
    return value((*r)->r, 0, 0);
  }
  Status put(Table t, std::string_view key, std::string_view v, Put how) override {
    const char* name = how == Put::kCreate ? "create" : how == Put::kReplace ? "replace" : "put";
    return write(name, Params().table(t).binary(key).binary(v));
  }
  Status del(Table t, std::string_view key, bool missing_ok) override {
    return write(missing_ok ? "erase" : "del", Params().table(t).binary(key));
  }
  Status scan(Table t, std::string_view from, const Visit& fn) override {
    std::string next(from);
    bool first = true;
    for (;;) {
      int limit = first ? kFirstPage : kLaterPage;
      auto r = read(first ? "scan_from" : "scan_after", Params().table(t).binary(next).text(std::to_string(limit)));
      if (!r.ok()) return r.status();
      int n = PQntuples((*r)->r);
      for (int i = 0; i < n; ++i) {
        std::string k = value((*r)->r, i, 0), v = value((*r)->r, i, 1);
        Result<bool> more = fn(k, v);
        if (!more.ok()) return more.status();
        if (!*more) return Status::Ok();
        if (i == n - 1) next = std::move(k);
      }
      if (n < limit) return Status::Ok();
      first = false;
    }
  }
  // Delivered by the server at the COMMIT. The payload is hex digits and ':' only.
  Status notify(std::string_view payload) override {
    if (payload.find_first_not_of("0123456789abcdef:") != std::string_view::npos) {
      return Status::InvalidArgument("change feed payload: unexpected characters");
    }
    return write("notify", Params().text(engine_->schema()).text(payload));
  }
  Result<std::string> last_key(Table t) override {
    auto r = read("last", Params().table(t));
    if (!r.ok()) return r.status();
    if (PQntuples((*r)->r) == 0) return Status::NotFound("empty table");
    return value((*r)->r, 0, 0);
  }
  Status commit(const std::function<void()>& applied) override {
    if (borrowed_) {  // a read: the enclosing transaction commits
      if (applied) applied();
      return Status::Ok();
    }
    held = {};
    Status s = own_pipe_ ? end_transaction() : Status::Ok();
    end_connection(/*roll_back=*/!s.ok());
    if (commit_unknown_) s = engine_->settle_lost_commit(s);
    if (s.ok() && applied) {
      held = {.engine = engine_, .applying = true};
      struct Reset {
        ~Reset() { held = {}; }  // also when `applied` throws
      } reset;
      applied();
    }
    turn_ = {};  // the next transaction may start; what waited on this one runs outside it
    if (!s.ok()) return s;
    for (auto& fn : on_commit_) fn();
    return s;
  }

 private:
  // Runs a read: with what is queued before it, at once.
  Result<std::unique_ptr<PgResult>> read(const char* name, const Params& p) {
    if (pipe_ != nullptr) {
      CMKFS_RETURN_IF_ERROR(pipe_->queue(name, p));
      return pipe_->settle();
    }
    auto r = exec_prepared(conn_, name, p);
    auto st = PQresultStatus(r->r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Status::IOError(EIO, pg_error(conn_, name));
    return r;
  }
  Status write(const char* name, const Params& p) {
    if (!write_) return Status(EROFS, "a write in a read transaction");
    return pipe_->queue(name, p);
  }
  // The COMMIT, sent with what is queued (the server skips it if any of that fails). What waits
  // on this commit must not run before it is on the server's disk.
  Status end_transaction() {
    Pipe& p = *own_pipe_;
    CMKFS_RETURN_IF_ERROR(p.failed());
    if (!on_commit_.empty()) CMKFS_RETURN_IF_ERROR(p.queue_sql("SET LOCAL synchronous_commit = on"));
    Status s = p.queue_sql("COMMIT");
    if (s.ok()) s = p.settle().status();
    if (s.ok() && on_writer_session_) engine_->committed_on_writer_session();
    if (!s.ok() && write_ && (p.broken() || PQstatus(conn_) != CONNECTION_OK)) {
      if (on_writer_session_) commit_unknown_ = true;  // settled once the connection is let go
      else engine_->lost_commit(s);
    }
    return s;
  }
  // Gives the connection back to the engine, or drops it when it is in no state to reuse.
  void end_connection(bool roll_back) {
    Status s = !own_pipe_ ? Status::Ok() : roll_back ? own_pipe_->roll_back() : own_pipe_->leave();
    if (on_writer_session_) {
      if (s.ok() && PQstatus(conn_) != CONNECTION_OK) s = Status::IOError(EIO, "connection lost");
      if (!s.ok()) engine_->lost_writer_session(s);  // the engine keeps the connection, and closes it
    } else if (s.ok()) {
      engine_->give_back(conn_);
    } else {
      engine_->give_back(nullptr);
      PQfinish(conn_);
    }
    conn_ = nullptr;
  }
  static std::string value(PGresult* r, int row, int col) {
    return std::string(PQgetvalue(r, row, col), static_cast<size_t>(PQgetlength(r, row, col)));
  }

  PostgresEngine* engine_;
  PGconn* conn_;
  Pipe* pipe_ = nullptr;  // own_pipe_, the outer transaction's, or null (each statement on its own)
  std::unique_ptr<Pipe> own_pipe_;
  bool write_ = false, borrowed_ = false, on_writer_session_ = false;
  bool commit_unknown_ = false;  // the COMMIT went out on the writer's session, which broke
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
    if (held.applying) return Status(EDEADLK, "a transaction begun while a commit is applied");
    if (write) return Status(EDEADLK, "a write transaction inside another transaction");
    return std::unique_ptr<EngineTxn>(new PostgresTxn(this, held));
  }
  if (write && read_only_) return Status(EROFS, "the metadata is open read-only");
  std::unique_lock<std::mutex> turn(txn_mu_);
  if (write && !lost_commit_.ok()) return lost_commit_;
  if (write && writer_) CMKFS_RETURN_IF_ERROR(resume_writer());
  bool on_writer_session = write && writer_;
  auto c = on_writer_session ? Result<PGconn*>(writer_lock_) : take();
  if (!c.ok()) return c.status();
  // The store's one writer reads without a transaction: nobody else writes what it reads (the
  // writer lock; key commands beside it write single records), and its own transactions run
  // one at a time. Two round trips fewer per read.
  if (!write && writer_lock_ != nullptr) return std::unique_ptr<EngineTxn>(new PostgresTxn(this, *c, std::move(turn)));
  // Queued: they reach the server with the transaction's first read or its commit.
  auto pipe = std::make_unique<Pipe>(*c);
  Status s = pipe->enter();
  if (s.ok() && write) {
    s = pipe->queue_sql("BEGIN ISOLATION LEVEL READ COMMITTED");
    if (s.ok()) s = pipe->queue_sql("SET LOCAL synchronous_commit = off");
    if (s.ok()) s = pipe->queue_sql(txn_lock_sql_.c_str());
    if (s.ok() && on_writer_session) s = queue_writer_mark(*pipe);
  } else if (s.ok()) {
    s = pipe->queue_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
  }
  if (!s.ok()) {
    if (on_writer_session) {
      lost_writer_session(s);
    } else {
      give_back(nullptr);
      PQfinish(*c);
    }
    return s;
  }
  return std::unique_ptr<EngineTxn>(new PostgresTxn(this, std::move(pipe), write, std::move(turn), on_writer_session));
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
  // In a commit's `applied` the transaction has ended: a flush on another connection can run.
  if (held.engine == this && !held.applying) return Status(EDEADLK, "sync inside a transaction");
  if (read_only_) return Status::Ok();
  auto c = take();
  if (!c.ok()) return c.status();
  Status s = exec(*c, "BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT");
  if (s.ok()) give_back(*c);
  else give_back(nullptr), PQfinish(*c);
  return s;
}

Status PostgresEngine::lock_writer() {
  if (writer_lock_ != nullptr || writer_) return Status::Ok();
  uint8_t id[16];
  CMKFS_RETURN_IF_ERROR(crypto::random_bytes(id));
  auto c = connect();  // the writes' statements prepared: they run on it
  if (!c.ok()) return c.status();
  // A session lock (not the transactions' key): held until this connection closes, which the
  // server notices when the process dies.
  auto locked = try_writer_lock(*c);
  if (!locked.ok() || !*locked) {
    PQfinish(*c);
    if (!locked.ok()) return locked.status();
    return Status(EBUSY, "the store is mounted (or checked) by another cmkfs on a host sharing its metadata");
  }
  writer_lock_ = *c;
  if (read_only_) return Status::Ok();  // a check that writes nothing leaves no mark
  writer_id_ = to_hex(id);
  commits_ = 0;
  if (PQresultStatus(exec_prepared(*c, "put", writer_mark(0))->r) != PGRES_COMMAND_OK) {
    Status s = Status::IOError(EIO, pg_error(*c, "writing the writer mark"));
    PQfinish(*c);
    writer_lock_ = nullptr;
    return s;
  }
  writer_ = true;
  return Status::Ok();
}

Result<bool> PostgresEngine::try_writer_lock(PGconn* c) const {
  // Named, so that pg_stat_activity shows which backend holds which store.
  PgResult r(PQexec(c, ("SET application_name = 'cmkfs writer " + schema_ + "'; SELECT pg_try_advisory_lock(" +
                        std::to_string(writer_key_) + ")")
                           .c_str()));
  if (PQresultStatus(r.r) != PGRES_TUPLES_OK || PQntuples(r.r) != 1 || PQnfields(r.r) != 1) {
    return Status::IOError(EIO, pg_error(c, "taking the writer lock"));
  }
  return std::string_view(PQgetvalue(r.r, 0, 0)) == "t";
}

void PostgresEngine::lost_writer_session(const Status& why) {
  if (writer_lock_ == nullptr) return;
  PQfinish(writer_lock_);  // the server dropped its lock, or will once it sees it gone
  writer_lock_ = nullptr;
  writer_lost_ = Status::IOError(EIO, "this mount lost its writer lock's session with the database (" + why.message() +
                                          "); it writes again once it has taken the lock back");
}

Result<uint64_t> PostgresEngine::retake_writer_lock() {
  auto c = connect();
  if (!c.ok()) return Status(EAGAIN, c.status().message());
  auto tried = try_writer_lock(*c);
  bool locked = tried.ok() && *tried;
  // Read with or without the lock: only a mount that took the lock after this one's writes
  // another id into the mark, so another id is final even while that mount holds the lock.
  Params key;
  key.table(Table::kSuper).binary(kWriterMarkKey);
  auto got = exec_prepared(*c, "get", key);
  bool read = PQresultStatus(got->r) == PGRES_TUPLES_OK && PQnfields(got->r) == 1;
  std::string mark = read && PQntuples(got->r) == 1 ? std::string(PQgetvalue(got->r, 0, 0), PQgetlength(got->r, 0, 0)) : "";
  std::string mine = writer_id_ + ":";
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(mark.data() + std::min(mark.size(), mine.size()), mark.data() + mark.size(), n);
  bool own = mark.compare(0, mine.size(), mine) == 0 && ec == std::errc() && end == mark.data() + mark.size();
  if (read && !own) {
    PQfinish(*c);  // its lock with it, if it was taken: the other mount's to take
    lost_commit_ = Status::IOError(EIO, "another cmkfs wrote this store while this mount had lost its writer lock: "
                                        "this mount writes nothing more: unmount it and mount again");
    return lost_commit_;
  }
  if (!locked || !read) {
    PQfinish(*c);
    return Status(EAGAIN, !read ? "reading the writer mark failed"
                                : "the store's writer lock is held (by this mount's old session until the server "
                                  "drops it, or by a check of the store)");
  }
  writer_lock_ = *c;
  writer_lost_ = Status::Ok();
  return n;
}

Status PostgresEngine::resume_writer() {
  if (writer_lock_ != nullptr) {
    // A session the server ended (a restart, a terminated backend) has said so on its socket: a
    // message, then the close, which the next read finds. Nothing else comes on an idle session.
    for (int i = 0; i < 4; ++i) {
      pollfd readable{PQsocket(writer_lock_), POLLIN, 0};
      if (::poll(&readable, 1, 0) <= 0) return Status::Ok();
      if (PQconsumeInput(writer_lock_) == 0 || PQstatus(writer_lock_) != CONNECTION_OK) break;
    }
    lost_writer_session(Status::IOError(EIO, pg_error(writer_lock_, "connection lost")));
  }
  auto now = std::chrono::steady_clock::now();
  if (now < writer_retry_) return writer_lost_;
  writer_retry_ = now + std::chrono::seconds(1);
  auto n = retake_writer_lock();
  if (!n.ok()) return n.status().code() == EAGAIN ? writer_lost_ : n.status();
  if (*n == commits_) return Status::Ok();
  lost_commit(Status::IOError(EIO, "the writer mark counts " + std::to_string(*n) + " commits, not " +
                                       std::to_string(commits_)));
  return lost_commit_;
}

Status PostgresEngine::settle_lost_commit(const Status& why) {
  lost_writer_session(why);  // done already unless the connection looked well
  auto deadline = std::chrono::steady_clock::now() + kSettleCommitFor;
  for (;;) {
    auto n = retake_writer_lock();
    if (n.ok() && *n == commits_ + 1) {
      ++commits_;
      return Status::Ok();
    }
    if (n.ok() && *n == commits_) return Status::IOError(EIO, why.message() + " (it did not land)");
    if (n.ok()) {
      lost_commit(Status::IOError(EIO, why.message() + "; the writer mark counts " + std::to_string(*n) +
                                           " commits, not " + std::to_string(commits_) + " or one more"));
      return lost_commit_;
    }
    if (n.status().code() != EAGAIN) break;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  lost_commit(why);
  return lost_commit_;
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
