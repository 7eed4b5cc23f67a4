// cmkfs run the way an operator's system runs it. systemd's notify protocol (a unit of
// Type=notify), checked with a NOTIFY_SOCKET of the test's own. And `mount -t fuse` and an fstab line,
// through mount(8) and mount.fuse3 (which run `cmkfs STORE MNT -o OPTS`), with cmkfs's own flags
// as options and what mount(8) and systemd add ignored. The program is named in the source
// (`/usr/bin/cmkfs#STORE`), as fuse allows: mount(8) gives its helpers a PATH of its own, so
// `-t fuse.cmkfs` finds cmkfs only where a package installs it.
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <sstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/listener.h"
#include "tests/support/metrics_scrape.h"
#include "tests/support/mount_fixture.h"

// AddressSanitizer's mlockall does nothing: a sanitizer build's daemon locks no memory at all.
#if defined(__SANITIZE_ADDRESS__)
#define CMKFS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CMKFS_TEST_ASAN 1
#endif
#endif

namespace cmkfs::testing {
namespace {

class SystemTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    init();
    source = cmkfs_binary() + "#" + store;
  }
  void expect_mounted_and_working() {
    std::string mounts = read_file("/proc/self/mounts");
    EXPECT_NE(mounts.find("cmkfs:" + store + " " + mnt + " fuse.cmkfs"), std::string::npos) << mounts;
    mounted = mounts.find(" " + mnt + " ") != std::string::npos;
    write_file(at("f"), "through mount(8)");
    EXPECT_EQ(read_file(at("f")), "through mount(8)");
    EXPECT_NE(read_file(log).find("mounted store"), std::string::npos);  // log-file= took effect
  }
  std::string source;
};

TEST_F(SystemTest, MountTypeFuseWithFlagsAsOptions) {
  auto r = run("mount -t fuse " + source + " " + mnt + " -o _netdev,nofail,key-check-interval=5s,log-file=" +
               log + ",audit-log=" + dir + "/audit.jsonl,x-systemd.requires=network-online.target");
  ASSERT_EQ(r.rc, 0) << r.output;
  expect_mounted_and_working();
  EXPECT_NE(read_file(dir + "/audit.jsonl").find("\"event\":\"unwrap\""), std::string::npos);
  umount();
}

TEST_F(SystemTest, AnFstabLineMountsWithMountMnt) {
  std::string tab = dir + "/fstab";
  write_file(tab, source + " " + mnt + " fuse defaults,_netdev,nofail,noauto,log-file=" + log + " 0 0\n");
  auto r = run("mount -T " + tab + " " + mnt);
  ASSERT_EQ(r.rc, 0) << r.output;
  expect_mounted_and_working();
  umount();
}

TEST_F(SystemTest, AnUnknownOptionIsRefusedBeforeTheKeyIsUnwrapped) {
  auto r = run("mount -t fuse " + source + " " + mnt + " -o audit-log=" + dir +
               "/audit.jsonl,bogus-option,log-file=" + log);
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("unknown mount option bogus-option"), std::string::npos) << r.output;
  EXPECT_FALSE(stdfs::exists(dir + "/audit.jsonl"));  // no unwrap was audited: none was made
  EXPECT_FALSE(stdfs::exists(log));
}

// The datagrams a daemon sends to NOTIFY_SOCKET, as systemd would receive them.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  ~NotifySocket() { ::close(fd_); }
  // Messages until one contains `want` (or `seconds` pass); all of them, joined.
  std::string until(const std::string& want, double seconds) {
    std::string all;
    timeval tv{0, 100000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < seconds * 10 && all.find(want) == std::string::npos; ++i) {
      char buf[4096];
      ssize_t n;
      while ((n = ::recv(fd_, buf, sizeof buf, 0)) > 0) all += std::string(buf, static_cast<size_t>(n)) + "\n";
    }
    return all;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST_F(SystemTest, UnderSystemdItNotifiesReadyStatusWatchdogAndStopping) {
  NotifySocket sock(dir + "/notify");
  auto r = run("NOTIFY_SOCKET=" + dir + "/notify WATCHDOG_USEC=1000000 " + cmkfs_binary() + " mount --foreground " +
               store + " " + mnt + " >" + log + " 2>&1 &");
  ASSERT_EQ(r.rc, 0);
  std::string got = sock.until("READY=1", 20);
  ASSERT_NE(got.find("READY=1"), std::string::npos) << got << read_file(log);
  mounted = true;
  EXPECT_NE(got.find("STATUS=serving " + mnt + "; key available"), std::string::npos) << got;
  write_file(at("f"), "served");  // READY means serving
  EXPECT_EQ(read_file(at("f")), "served");
  got = sock.until("WATCHDOG=1", 5);
  EXPECT_NE(got.find("WATCHDOG=1"), std::string::npos) << got;
  umount();
  got = sock.until("STOPPING=1", 10);
  EXPECT_NE(got.find("STOPPING=1"), std::string::npos) << got;
}

// cmkfs status lists each mount and view with its daemon and key state.
// A copy of a store has the same id: its live state must be its own mount's, not the original's.
TEST_F(SystemTest, ACopyOfAMountedStoreNeitherShowsNorRemovesTheOriginalsLiveState) {
  mount();
  write_file(at("f"), "x");
  ::sync();
  auto r = run("cp -a " + store + " " + dir + "/copy");
  ASSERT_EQ(r.rc, 0) << r.output;
  auto shown = run(cmkfs_binary() + " encryption show " + dir + "/copy");
  ASSERT_EQ(shown.rc, 0) << shown.output;
  EXPECT_EQ(shown.output.find("liveKeyState"), std::string::npos) << shown.output;
  stdfs::create_directories(dir + "/mnt2");
  r = run(cmkfs_binary() + " mount " + dir + "/copy " + dir + "/mnt2 --log-file " + dir + "/copy.log");
  ASSERT_EQ(r.rc, 0) << r.output << read_file(dir + "/copy.log");
  r = run(cmkfs_binary() + " umount " + dir + "/mnt2");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_EQ(show()["liveKeyState"]["mountpoint"], mnt);  // the original's, still published
}

// --log-format json: every line of the daemon's log one JSON object (for log shippers).
TEST_F(SystemTest, JsonLogLinesAreOneObjectEach) {
  auto r = run("mount -t fuse " + source + " " + mnt + " -o log-format=json,log-file=" + log);
  ASSERT_EQ(r.rc, 0) << r.output;
  mounted = true;
  write_file(at("f"), "x");
  umount();
  std::istringstream lines(read_file(log));
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    EXPECT_TRUE(j["time"].is_string() && j["level"].is_string() && j["message"].is_string()) << line;
    ++n;
  }
  EXPECT_GE(n, 2);
  EXPECT_NE(read_file(log).find("\"message\":\"mounted store"), std::string::npos) << read_file(log);
}

TEST_F(SystemTest, OfflineCommandsAuditWhereTheyAreTold) {
  std::string audit = dir + "/offline-audit.jsonl";
  for (const std::string& cmd : {"fsck " + store, "inspect " + store}) {
    auto r = run(cmkfs_binary() + " " + cmd + " --audit-log " + audit);
    EXPECT_EQ(r.rc, 0) << cmd << ": " << r.output;
  }
  std::string log_text = read_file(audit);
  EXPECT_NE(log_text.find("\"reason\":\"fsck\""), std::string::npos) << log_text;
  EXPECT_NE(log_text.find("\"reason\":\"inspect\""), std::string::npos) << log_text;
}

// Completion comes from the parser: a subcommand's options and the nested subcommands complete.
TEST_F(SystemTest, BashCompletionOffersWhatTheParserKnows) {
  auto script = run(cmkfs_binary() + " completion bash > " + dir + "/cmkfs.bash");
  ASSERT_EQ(script.rc, 0) << script.output;
  auto complete = [&](const std::string& words, int cword) {
    return run("bash -c 'source " + dir + "/cmkfs.bash; COMP_WORDS=(" + words + "); COMP_CWORD=" +
               std::to_string(cword) + "; _cmkfs; echo \"${COMPREPLY[*]}\"'").output;
  };
  EXPECT_NE(complete("cmkfs encryption rotate-", 2).find("rotate-key rotate-data-key"), std::string::npos);
  EXPECT_EQ(complete("cmkfs mount " + store + " " + mnt + " --key-check-", 4), "--key-check-interval\n");
  EXPECT_NE(complete("cmkfs mou", 1).find("mount"), std::string::npos);
  EXPECT_NE(complete("cmkfs init " + store + " --cred", 3).find("--credential --credential-file"), std::string::npos);
}

TEST_F(SystemTest, StatusListsMountsAndViewsWithTheirKeyState) {
  mount();
  stdfs::create_directories(dir + "/view");
  auto v = run(cmkfs_binary() + " view " + mnt + " " + dir + "/view");
  ASSERT_EQ(v.rc, 0) << v.output;
  auto r = run(cmkfs_binary() + " status --json 2>/dev/null");
  ASSERT_EQ(r.rc, 0) << r.output;
  auto rows = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_TRUE(rows.is_array()) << r.output;
  int found = 0;
  for (const auto& row : rows) {
    if (row.value("store", "") != store) continue;
    ++found;
    EXPECT_EQ(row["keyState"], "available") << row.dump();
    EXPECT_EQ(row["pid"], daemon_pid(store)) << row.dump();
    EXPECT_GE(row.value("uptimeSeconds", -1), 0) << row.dump();
    EXPECT_EQ(row["keyStateSince"].get<std::string>().back(), 'Z');  // ISO 8601, UTC
    EXPECT_EQ(row["mountpoint"], row["kind"] == "view" ? dir + "/view" : mnt);
  }
  EXPECT_EQ(found, 2) << r.output;  // the mount and its view
  auto text = run(cmkfs_binary() + " status");
  EXPECT_NE(text.output.find("MOUNTPOINT"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find(mnt), std::string::npos) << text.output;
  EXPECT_EQ(run(cmkfs_binary() + " umount " + dir + "/view").rc, 0);
}

// A metrics address another program holds: the mount comes up, cannot serve its metrics, and is
// taken down again with a clear error, the daemon's threads stopped and its session freed (the
// sanitizer run's leak check saw the session lost before), the store free for the next mount.
TEST_F(SystemTest, AMetricsAddressInUseRefusesTheMountAndLetsGoOfTheStore) {
  CommandResult r;
  std::string addr;
  {
    RecordingListener held;
    ASSERT_GT(held.port(), 0);
    addr = "127.0.0.1:" + std::to_string(held.port());
    r = try_mount("--metrics-listen " + addr);
  }
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("cannot listen for metrics on " + addr), std::string::npos) << r.output;
  EXPECT_EQ(read_file("/proc/self/mountinfo").find(" " + mnt + " "), std::string::npos);
  mount();
  write_file(at("f"), "served after the refused mount");
  remount();
  EXPECT_EQ(read_file(at("f")), "served after the refused mount");
}

// Prometheus scrapes /metrics: requests by operation, bytes, the key's state and checks.
TEST_F(SystemTest, MetricsShowRequestsBytesAndTheKey) {
  std::string addr = free_loopback_address();
  mount("--metrics-listen " + addr + " --key-check-interval 300ms");
  write_file(at("f"), std::string(100000, 'm'));
  EXPECT_EQ(read_file(at("f")).size(), 100000u);
  auto r = run("curl -fsS http://" + addr + "/metrics");
  ASSERT_EQ(r.rc, 0) << r.output;
  const std::string& m = r.output;
  std::string labels = "{mountpoint=\"" + mnt + "\"";
  for (const std::string& want :
       {"cmkfs_fuse_requests_total" + labels + ",op=\"create\"} 1", "cmkfs_key_state" + labels + ",state=\"available\"} 1",
        "cmkfs_key_state" + labels + ",state=\"revoked\"} 0", "cmkfs_data_key_generation" + labels + "} 1",
        "cmkfs_fuse_request_duration_seconds_bucket" + labels + ",op=\"write\",le=\"+Inf\"}",
        std::string("# TYPE cmkfs_fuse_request_duration_seconds histogram"), "cmkfs_io_errors_total" + labels + "} 0"}) {
    EXPECT_NE(m.find(want), std::string::npos) << want << "\n" << m.substr(0, 3000);
  }
  // Bytes written reached the daemon (the writeback cache sends them at close).
  EXPECT_GE(metric(m, "cmkfs_written_bytes_total" + labels + "}"), 100000);
  EXPECT_NE(run("curl -fsS http://" + addr + "/nothing").rc, 0);  // only /metrics

  // Group commit wrote the create in a batch (the key's checks: CmkTest, with a vault key).
  std::string later;
  for (int i = 0; i < 50 && metric(later, "cmkfs_commit_batch_changes_count" + labels + "}") < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    later = run("curl -fsS http://" + addr + "/metrics").output;
  }
  EXPECT_GE(metric(later, "cmkfs_commit_batch_changes_count" + labels + "}"), 1);
  EXPECT_GE(metric(later, "cmkfs_commit_batch_changes_sum" + labels + "}"), 1);
  EXPECT_EQ(metric(later, "cmkfs_commit_batch_failures_total" + labels + "}"), 0);
  EXPECT_NE(later.find("cmkfs_commit_batch_duration_seconds_bucket" + labels + ",le=\"+Inf\"}"), std::string::npos);
}

// As root the daemon locks its memory (no key reaches swap), but not its map of the metadata
// file: LMDB maps the whole database, and a `find` over a million files would pin all of it in
// RAM (it did: 540 MB locked after one).
TEST_F(SystemTest, TheDaemonLocksItsMemoryButNotTheMetadataMap) {
  mount();
  for (int i = 0; i < 100; ++i) write_file(at("f" + std::to_string(i)), "locked?");
  remount();  // what follows is read through the map
  for (int i = 0; i < 100; ++i) EXPECT_EQ(read_file(at("f" + std::to_string(i))), "locked?");
  pid_t pid = daemon_pid(store);
  ASSERT_GT(pid, 0);
  std::string proc = "/proc/" + std::to_string(pid);
  std::string status = read_file(proc + "/status");
#ifndef CMKFS_TEST_ASAN
  EXPECT_EQ(status.find("VmLck:\t       0 kB"), std::string::npos) << status;  // the rest is locked
#endif

  // The map's block in smaps: its resident and locked kB, and its flags ("lo": locked).
  std::istringstream smaps(read_file(proc + "/smaps"));
  std::string line, flags;
  long rss_kb = -1, locked_kb = -1;
  bool in_map = false;
  auto kb = [&line] { return std::stol(line.substr(line.find(':') + 1)); };
  while (std::getline(smaps, line)) {
    if (line.ends_with(store + "/meta/data.mdb")) in_map = true;
    if (!in_map) continue;
    if (line.starts_with("Rss:")) rss_kb = kb();
    if (line.starts_with("Locked:")) locked_kb = kb();
    if (line.starts_with("VmFlags:")) {
      flags = line + " ";
      in_map = false;
    }
  }
  ASSERT_FALSE(flags.empty()) << read_file(proc + "/maps");
  EXPECT_GT(rss_kb, 0);  // the reads went through it
  EXPECT_EQ(locked_kb, 0);
  EXPECT_EQ(flags.find(" lo "), std::string::npos) << flags;
}

}  // namespace
}  // namespace cmkfs::testing
