// The command line's parser alone: what each command fills in, and the usage errors.
#include <gtest/gtest.h>

#include <sstream>

#include "fs/cli/cli.h"

namespace cmkfs::testing {
namespace {

using fs::Command;

int parse(std::vector<std::string> args, Command* cmd, std::string* out = nullptr) {
  args.insert(args.begin(), "cmkfs");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  std::ostringstream o, e;
  int rc = fs::parse_command_line(static_cast<int>(argv.size()), argv.data(), cmd, o, e);
  if (out != nullptr) *out = o.str() + e.str();
  return rc;
}

TEST(CliParser, InitWithChunkSizeAndKeyFile) {
  Command c;
  ASSERT_EQ(parse({"init", "/s", "--chunk-size", "1MiB", "--local-key-file", "/k"}, &c), -1);
  EXPECT_EQ(c.kind, Command::Kind::kInit);
  EXPECT_EQ(c.init.store, "/s");
  EXPECT_EQ(c.init.chunk_size, 1u << 20);
  EXPECT_EQ(c.init.kek.key_file, "/k");
  ASSERT_EQ(parse({"init", "/s"}, &c), -1);
  EXPECT_EQ(c.init.chunk_size, 4u << 10);
}

TEST(CliParser, BadChunkSizeIsAUsageError) {
  Command c;
  std::string out;
  EXPECT_EQ(parse({"init", "/s", "--chunk-size", "3000"}, &c, &out), fs::kExitUsage);
  EXPECT_NE(out.find("power of two"), std::string::npos);
  EXPECT_EQ(parse({"init", "/s", "--chunk-size", "2MiB"}, &c), fs::kExitUsage);
}

TEST(CliParser, InitWithObjectsInRados) {
  Command c;
  ASSERT_EQ(parse({"init", "/s", "--objects", "rados://pool-1/ns_2", "--ceph-conf", "/c/ceph.conf", "--ceph-user", "cmkfs"},
                  &c), -1);
  EXPECT_EQ(c.init.objects.kind, "rados");
  EXPECT_EQ(c.init.objects.pool, "pool-1");
  EXPECT_EQ(c.init.objects.ns, "ns_2");
  EXPECT_EQ(c.init.objects.conf, "/c/ceph.conf");
  EXPECT_EQ(c.init.objects.user, "cmkfs");
  Command d;
  ASSERT_EQ(parse({"init", "/s", "--objects", "rados://pool"}, &d), -1);
  EXPECT_EQ(d.init.objects.ns, "");  // init makes it the store id
  EXPECT_EQ(d.init.objects.conf, "/etc/ceph/ceph.conf");
  EXPECT_EQ(d.init.objects.user, "admin");
  Command e;
  ASSERT_EQ(parse({"init", "/s"}, &e), -1);
  EXPECT_TRUE(e.init.objects.local());
  // Names a shell, a path or Ceph would read otherwise are refused before anything is made.
  for (const char* bad : {"rados://", "rados://a/", "rados://../x", "rados://p/a/b", "rados://p q", "/some/dir",
                          "rados://p/ns;rm"}) {
    std::string out;
    Command b;
    EXPECT_EQ(parse({"init", "/s", "--objects", bad}, &b, &out), fs::kExitUsage) << bad;
    EXPECT_FALSE(out.empty()) << bad;
  }
}

TEST(CliParser, InitWithObjectsInS3) {
  Command c;
  ASSERT_EQ(parse({"init", "/s", "--objects", "s3://reg-bucket/p1", "--s3-endpoint", "https://s3.example.com",
                   "--s3-credentials", "/k/s3.keys", "--s3-region", "eu-west-1", "--s3-ca", "/k/ca.pem"},
                  &c), -1);
  EXPECT_EQ(c.init.objects.kind, "s3");
  EXPECT_EQ(c.init.objects.pool, "reg-bucket");
  EXPECT_EQ(c.init.objects.ns, "p1");
  EXPECT_EQ(c.init.objects.endpoint, "https://s3.example.com");
  EXPECT_EQ(c.init.objects.credentials, "/k/s3.keys");
  EXPECT_EQ(c.init.objects.region, "eu-west-1");
  EXPECT_EQ(c.init.objects.ca, "/k/ca.pem");
  Command d;
  ASSERT_EQ(parse({"init", "/s", "--objects", "s3://bucket", "--s3-endpoint", "http://127.0.0.1:7480", "--s3-credentials", "k"},
                  &d), -1);
  EXPECT_EQ(d.init.objects.region, "us-east-1");
  // Refused before anything is made: a missing endpoint or credentials file, plain http to
  // another host, a bucket name S3 would not take, a region that is not one.
  const std::vector<std::vector<std::string>> bad = {
      {"--objects", "s3://bucket", "--s3-credentials", "k"},
      {"--objects", "s3://bucket", "--s3-endpoint", "https://h"},
      {"--objects", "s3://bucket", "--s3-endpoint", "http://10.1.2.3", "--s3-credentials", "k"},
      {"--objects", "s3://Bucket", "--s3-endpoint", "https://h", "--s3-credentials", "k"},
      {"--objects", "s3://bucket", "--s3-endpoint", "https://h/x", "--s3-credentials", "k"},
      {"--objects", "s3://bucket", "--s3-endpoint", "https://h", "--s3-credentials", "k", "--s3-region", "US East"},
  };
  for (const auto& args : bad) {
    std::vector<std::string> argv = {"init", "/s"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out;
    Command b;
    EXPECT_EQ(parse(argv, &b, &out), fs::kExitUsage) << args[1] << " " << args.back();
    EXPECT_FALSE(out.empty());
  }
}

TEST(CliParser, MetadataInPostgres) {
  Command c;
  ASSERT_EQ(parse({"init", "/s", "--meta", "postgres://reg_1", "--pg-conninfo", "/etc/cmkfs/pg"}, &c), -1);
  EXPECT_EQ(c.init.meta.engine, "postgres");
  EXPECT_EQ(c.init.meta.schema, "reg_1");
  EXPECT_EQ(c.init.meta.conninfo_file, "/etc/cmkfs/pg");
  Command d;
  ASSERT_EQ(parse({"init", "/s", "--meta", "postgres", "--pg-conninfo", "/p"}, &d), -1);
  EXPECT_EQ(d.init.meta.schema, "");  // init makes it cmkfs_<store id>
  Command e;
  ASSERT_EQ(parse({"init", "/s"}, &e), -1);
  EXPECT_TRUE(e.init.meta.lmdb());
  Command t;
  ASSERT_EQ(parse({"trust", "/s", "--local-key-file", "/k", "--meta", "postgres://cmkfs_ab", "--pg-conninfo", "/p"}, &t), -1);
  EXPECT_EQ(t.trust.meta.schema, "cmkfs_ab");
  Command m;
  ASSERT_EQ(parse({"mount", "/s", "/m", "--follow"}, &m), -1);
  EXPECT_TRUE(m.mount.follow);
  EXPECT_FALSE(m.mount.monitor.writes);  // a follower never rewraps nor rotates
  // A schema name goes into SQL: anything but [a-z][a-z0-9_]* is refused before anything is made;
  // postgres needs its connection file, which goes with nothing else.
  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"init", "/s", "--meta", "postgres://Reg", "--pg-conninfo", "/p"},
           {"init", "/s", "--meta", "postgres://a;drop", "--pg-conninfo", "/p"},
           {"init", "/s", "--meta", "postgres://1a", "--pg-conninfo", "/p"},
           {"init", "/s", "--meta", "postgres://a b", "--pg-conninfo", "/p"},
           {"init", "/s", "--meta", "mysql://x", "--pg-conninfo", "/p"},
           {"init", "/s", "--meta", "postgres"},
           {"init", "/s", "--pg-conninfo", "/p"},
           {"trust", "/s", "--local-key-file", "/k", "--meta", "postgres", "--pg-conninfo", "/p"}}) {
    std::string out;
    Command b;
    EXPECT_EQ(parse(bad, &b, &out), fs::kExitUsage) << bad[3];
    EXPECT_FALSE(out.empty()) << bad[3];
  }
}

TEST(CliParser, MountOptionsAndGlobalFlagsAnywhere) {
  Command c;
  ASSERT_EQ(parse({"mount", "/s", "/m", "-f", "-o", "ro,allow_other", "--log-level", "debug"}, &c), -1);
  EXPECT_EQ(c.kind, Command::Kind::kMount);
  EXPECT_TRUE(c.mount.foreground);
  EXPECT_EQ(c.mount.fuse_options, std::vector<std::string>{"ro,allow_other"});
  EXPECT_EQ(c.log_level, "debug");
}

TEST(CliParser, HelpExitsZeroAndDescribesEveryCommand) {
  Command c;
  std::string out;
  EXPECT_EQ(parse({"--help"}, &c, &out), 0);
  for (const char* word : {"init", "mount", "umount", "fsck", "encryption"}) EXPECT_NE(out.find(word), std::string::npos);
  EXPECT_EQ(parse({"mount", "--help"}, &c, &out), 0);
  EXPECT_NE(out.find("allow_other"), std::string::npos);
}

// The man page is made from the parser: every command and every option its --help shows is on it.
TEST(CliParser, TheManPageShowsEveryCommandAndOptionOfHelp) {
  Command c;
  std::string page;
  ASSERT_EQ(parse({"manpage"}, &c, &page), 0);
  ASSERT_EQ(page.rfind(".TH CMKFS 1", 0), 0u);
  auto roff = [](std::string s) {
    std::string out;
    for (char ch : s) out += ch == '-' ? std::string("\\-") : std::string(1, ch);
    return out;
  };
  for (std::vector<std::string> command :
       {std::vector<std::string>{}, {"init"}, {"mount"}, {"umount"}, {"view"}, {"fsck"}, {"inspect"}, {"status"},
        {"cat"}, {"export"}, {"encryption", "show"}, {"encryption", "enable"}, {"encryption", "rotate-key"},
        {"encryption", "rotate-data-key"}, {"trust"}}) {
    std::string help;
    command.push_back("--help");
    ASSERT_EQ(parse(command, &c, &help), 0);
    command.pop_back();
    std::string heading = ".SS \"cmkfs";
    for (const auto& w : command) heading += " " + roff(w);
    if (!command.empty()) {
      EXPECT_NE(page.find(heading), std::string::npos) << heading;
    }
    size_t checked = 0;
    for (size_t at = help.find(" --"); at != std::string::npos; at = help.find(" --", at + 3)) {
      size_t end = help.find_first_of(" ,=:.)`'\n", at + 3);
      std::string option = help.substr(at + 1, end - at - 1);
      if (option == "--help") continue;
      EXPECT_NE(page.find("\\fB" + roff(option) + "\\fR"), std::string::npos) << option << " of " << heading;
      ++checked;
    }
    if (command == std::vector<std::string>{"mount"}) {
      EXPECT_GT(checked, 10u);
    }
  }
  EXPECT_EQ(page.find("manpage"), std::string::npos);  // the hidden command itself is not shown
  for (const char* section : {".SH EXIT STATUS", ".SH FILES", ".SH ENVIRONMENT", ".SH SEE ALSO"}) {
    EXPECT_NE(page.find(section), std::string::npos) << section;
  }
}

// init --from-file: the file fills what the command line leaves out; typos are refused.
TEST(CliParser, InitFromATemplateFileWhereTheCommandLineWins) {
  std::string file = ::testing::TempDir() + "/store.json";
  auto write = [&](const std::string& text) {
    FILE* f = std::fopen(file.c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  write(R"({"store": "/srv/store", "chunkSize": "64KiB", "keyVaultProperties": {"keyIdentifier":
           "https://v.example/keys/cmk", "identity": "[system]", "vaultCa": "/etc/ca.pem"}})");
  Command c;
  ASSERT_EQ(parse({"init", "--from-file", file}, &c), -1);
  EXPECT_EQ(c.init.store, "/srv/store");
  EXPECT_EQ(c.init.chunk_size, 64u << 10);
  EXPECT_EQ(c.vault.key_encryption_key, "https://v.example/keys/cmk");
  EXPECT_EQ(c.vault.identity, "[system]");
  EXPECT_EQ(c.vault.vault_ca, "/etc/ca.pem");
  EXPECT_EQ(c.init.kek.provider, keyclient::ProviderKind::kVault);
  ASSERT_EQ(parse({"init", "/other", "--from-file", file, "--chunk-size", "4KiB", "--identity", "abc"}, &c), -1);
  EXPECT_EQ(c.init.store, "/other");
  EXPECT_EQ(c.init.chunk_size, 4u << 10);
  EXPECT_EQ(c.vault.identity, "abc");
  std::string out;
  write(R"({"store": "/s", "keyVaultProperties": {"keyIdentifer": "https://v.example/keys/cmk"}})");
  EXPECT_EQ(parse({"init", "--from-file", file}, &c, &out), fs::kExitUsage);
  EXPECT_NE(out.find("unknown field keyVaultProperties.keyIdentifer"), std::string::npos) << out;
  write(R"({"localKeyFile": "/k", "keyVaultProperties": {"keyIdentifier": "https://v.example/keys/cmk"}})");
  EXPECT_EQ(parse({"init", "/s", "--from-file", file}, &c, &out), fs::kExitUsage);
  write(R"({"chunkSize": "4KiB"})");
  EXPECT_EQ(parse({"init", "--from-file", file}, &c, &out), fs::kExitUsage);  // no store anywhere
  EXPECT_NE(out.find("init needs STORE"), std::string::npos) << out;
}

TEST(CliParser, MissingArgumentsAreUsageErrors) {
  Command c;
  EXPECT_EQ(parse({}, &c), fs::kExitUsage);
  EXPECT_EQ(parse({"mount", "/s"}, &c), fs::kExitUsage);
  EXPECT_EQ(parse({"frobnicate"}, &c), fs::kExitUsage);
}

TEST(CliParser, SizesParse) {
  EXPECT_EQ(fs::parse_size("65536"), 65536u);
  EXPECT_EQ(fs::parse_size("64K"), 65536u);
  EXPECT_EQ(fs::parse_size("64KiB"), 65536u);
  EXPECT_EQ(fs::parse_size("1MiB"), 1u << 20);
  EXPECT_FALSE(fs::parse_size("lots"));
  EXPECT_FALSE(fs::parse_size("12XB"));
  EXPECT_FALSE(fs::parse_size(""));
}

TEST(CliParser, ReadAheadIsASizeOrZero) {
  Command c;
  ASSERT_EQ(parse({"mount", "/s", "/m"}, &c), -1);
  EXPECT_EQ(c.mount.read_ahead, 4u << 20);
  ASSERT_EQ(parse({"mount", "/s", "/m", "--read-ahead", "0"}, &c), -1);
  EXPECT_EQ(c.mount.read_ahead, 0u);
  ASSERT_EQ(parse({"mount", "/s", "/m", "--read-ahead", "512KiB"}, &c), -1);
  EXPECT_EQ(c.mount.read_ahead, 512u << 10);
  std::string out;
  EXPECT_EQ(parse({"mount", "/s", "/m", "--read-ahead", "lots"}, &c, &out), fs::kExitUsage);
  EXPECT_NE(out.find("--read-ahead lots"), std::string::npos) << out;
}

// How mount.fuse3 calls a FUSE program for fstab and `mount -t fuse.cmkfs`: STORE MNT -o OPTS.
// Every mount flag is also an option; what mount(8) and systemd add is dropped.
TEST(CliParser, MountFuse3FormAndFstabOptions) {
  Command c;
  ASSERT_EQ(parse({"/srv/store", "/srv/mnt", "-o",
                   "rw,_netdev,nofail,defaults,x-systemd.automount,key-check-interval=2s,allow_other,no-io-uring,direct-reads,"
                   "log-file=/var/log/c.log"},
                  &c),
            -1);
  EXPECT_EQ(c.kind, Command::Kind::kMount);
  EXPECT_EQ(c.mount.store, "/srv/store");
  EXPECT_EQ(c.mount.mountpoint, "/srv/mnt");
  EXPECT_EQ(c.mount.monitor.check_interval, std::chrono::seconds(2));
  EXPECT_FALSE(c.mount.io_uring);
  EXPECT_TRUE(c.mount.direct_reads);
  EXPECT_EQ(c.mount.log_file, "/var/log/c.log");
  EXPECT_EQ(c.mount.fuse_options, std::vector<std::string>{"rw,allow_other"});
  ASSERT_EQ(parse({"mount", "/s", "/m", "-oro"}, &c), -1);
  EXPECT_EQ(c.mount.fuse_options, std::vector<std::string>{"ro"});
}

// Refused before anything is opened: an option cmkfs does not know, or one that would change
// how its mounts are recognised.
TEST(CliParser, UnknownMountOptionsAreUsageErrors) {
  Command c;
  std::string out;
  for (const char* bad : {"bogus", "fsname=other", "subtype=x", "key-check-interval", "allow_other=1"}) {
    EXPECT_EQ(parse({"mount", "/s", "/m", "-o", bad}, &c, &out), fs::kExitUsage) << bad;
    EXPECT_NE(out.find("unknown mount option"), std::string::npos) << out;
  }
  EXPECT_EQ(parse({"/s", "/m", "-o", "bogus"}, &c, &out), fs::kExitUsage);
}

}  // namespace
}  // namespace cmkfs::testing
