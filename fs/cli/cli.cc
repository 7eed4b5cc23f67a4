#include "fs/cli/cli.h"

#include "crypto/base/nearest.h"
#include "crypto/base/printable.h"
#include "fs/cli/init_template.h"
#include "fs/cli/manpage.h"

#include <CLI/CLI.hpp>
#include <set>
#include <vector>
#include <ostream>

namespace cmkfs::fs {

std::optional<uint64_t> parse_size(std::string_view text) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    if (v > (UINT64_MAX - 9) / 10) return std::nullopt;
    v = v * 10 + (text[i++] - '0');
  }
  if (i == 0) return std::nullopt;
  std::string unit(text.substr(i));
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  int shift = 0;
  if (unit.empty() || unit == "b") shift = 0;
  else if (unit == "k" || unit == "kib" || unit == "kb") shift = 10;
  else if (unit == "m" || unit == "mib" || unit == "mb") shift = 20;
  else if (unit == "g" || unit == "gib" || unit == "gb") shift = 30;
  else return std::nullopt;
  if (shift > 0 && v > (UINT64_MAX >> shift)) return std::nullopt;
  return v << shift;
}

std::string format_size(uint64_t bytes) {
  if (bytes != 0 && bytes % (1 << 20) == 0) return std::to_string(bytes >> 20) + "MiB";
  if (bytes != 0 && bytes % (1 << 10) == 0) return std::to_string(bytes >> 10) + "KiB";
  return std::to_string(bytes);
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    if (v > 1000000000000ull) return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(text[i++] - '0');
  }
  if (i == 0) return std::nullopt;
  std::string_view unit = text.substr(i);
  uint64_t ms_per = unit == "ms" ? 1 : unit.empty() || unit == "s" ? 1000 : unit == "m" ? 60000 : unit == "h" ? 3600000 : 0;
  if (ms_per == 0) return std::nullopt;
  return std::chrono::milliseconds(v * ms_per);
}

namespace {

// The form parse_duration() reads back: "30s", "15m", "1h", "500ms".
std::string format_duration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

void add_vault_options(CLI::App* cmd, VaultKeyOptions* v, bool key_required) {
  auto* kek = cmd->add_option("--key-encryption-key", v->key_encryption_key,
                              "Vault key id https://VAULT/keys/NAME[/VERSION], or an HSM key "
                              "'pkcs11:token=T;object=LABEL[;id=%NN]?module-path=PATH&pin-source=file:PATH'; "
                              "without a version (id) the latest is followed (automatic rotation)");
  if (key_required) kek->required();
  cmd->add_option("--credential", v->credential,
                  "Vault key: how to get its tokens: managed-identity (default), app-service, workload-identity, "
                  "client-secret, client-certificate");
  cmd->add_option("--identity", v->identity,
                  "Vault key: client id of the managed identity or app, or [system] (workload identity: default "
                  "$AZURE_CLIENT_ID)");
  cmd->add_option("--identity-endpoint", v->identity_endpoint,
                  "Managed identity token endpoint (default " + std::string(keyclient::kAzureImdsEndpoint) +
                      "; app-service: $IDENTITY_ENDPOINT)");
  cmd->add_option("--authority-host", v->authority_host,
                  "Entra credentials: the authority (default $AZURE_AUTHORITY_HOST, else https://login.microsoftonline.com)");
  cmd->add_option("--tenant-id", v->tenant_id, "Entra credentials: the tenant (default $AZURE_TENANT_ID)");
  cmd->add_option("--credential-file", v->credential_file,
                  "The client secret, the certificate and key (PEM), the federated token (default "
                  "$AZURE_FEDERATED_TOKEN_FILE), or the App Service identity header; secrets only ever from files");
  cmd->add_option("--vault-ca", v->vault_ca, "CA certificate file for the vault and identity endpoint");
}

// --meta and --pg-conninfo into `meta`; false (with the message in `err`) when they are wrong.
bool parse_meta_options(const std::string& url, MetaConfig* meta, std::ostream& err) {
  if (url.empty() || url == "lmdb") {
    if (meta->conninfo_file.empty()) return true;
    err << "cmkfs: --pg-conninfo goes with --meta postgres\n";
    return false;
  }
  if (url != "postgres" && url.rfind("postgres://", 0) != 0) {
    err << "cmkfs: --meta " << url << " is neither lmdb nor postgres[://SCHEMA]\n";
    return false;
  }
  meta->engine = "postgres";
  if (url.size() > 11) meta->schema = url.substr(11);
  if (!meta->schema.empty() && !meta::valid_schema_name(meta->schema)) {
    err << "cmkfs: --meta: a schema name is lower-case letters, digits and _, starting with a letter\n";
    return false;
  }
  if (meta->conninfo_file.empty()) {
    err << "cmkfs: --meta postgres needs --pg-conninfo FILE\n";
    return false;
  }
  return true;
}

void add_object_store_options(CLI::App* cmd, ObjectsConfig* o) {
  cmd->add_option("--ceph-conf", o->conf,
                  "RADOS objects: the Ceph config file naming the monitors and the keyring (default "
                  "/etc/ceph/ceph.conf; kept in this host's binding, never in the store)");
  cmd->add_option("--ceph-user", o->user, "RADOS objects: the Ceph client name, without client. (default admin)");
  cmd->add_option("--s3-endpoint", o->endpoint,
                  "S3 objects: the service, http(s)://HOST[:PORT] (plain http only to this host; kept in this "
                  "host's binding, never in the store)");
  cmd->add_option("--s3-credentials", o->credentials,
                  "S3 objects: a file of yours, unreadable by others, with access_key = ... and secret_key = ... "
                  "lines (an AWS credentials file's names work too)");
  cmd->add_option("--s3-region", o->region, "S3 objects: the region requests are signed for (default us-east-1)");
  cmd->add_option("--s3-ca", o->ca, "S3 objects: a CA file for the endpoint's certificate (default: the system's)");
}

bool set_duration(const std::string& text, std::chrono::milliseconds* out, const char* flag, std::ostream& err) {
  if (text.empty()) return true;
  auto d = parse_duration(text);
  if (!d || d->count() == 0) {
    err << "cmkfs: " << flag << " " << text << " is not a duration (like 500ms, 30s, 15m, 1h)\n";
    return false;
  }
  *out = *d;
  return true;
}

int parse_args(int argc, const char* const* argv, Command* cmd, std::ostream& out, std::ostream& err);

// mount(8) and fstab options for a cmkfs mount. Each mount flag is also an option
// (key-check-interval=30s); what mount(8), systemd and fstab add for themselves is dropped; FUSE's
// own options pass; anything else is refused before any key is touched.
const std::set<std::string, std::less<>> kValueFlags = {
    "key-check-interval", "rotation-poll-interval", "offline-grace", "vault-timeout", "read-ahead", "log-file",
    "audit-log", "threads", "attr-timeout", "entry-timeout", "commit-interval", "log-level", "log-format", "metrics-listen",
    "inode-cache"};
const std::set<std::string, std::less<>> kBareFlags = {"no-writeback-cache", "no-io-uring", "direct-reads"};
const std::set<std::string, std::less<>> kFuseOptions = {
    "allow_other", "allow_root", "default_permissions", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec",
    "exec", "noatime", "atime", "relatime", "norelatime", "strictatime", "nodiratime", "diratime", "sync", "async",
    "dirsync"};
const std::set<std::string, std::less<>> kIgnored = {"defaults", "_netdev", "nofail", "auto", "noauto", "user",
                                                     "users", "nouser", "owner", "group", "nofail", "loud", "silent"};

// Rewrites `args` (without argv[0]) for the parser: the mount.fuse3 form `STORE MNT -o OPTS`
// becomes `mount STORE MNT ...`, and every -o list of a mount is split into flags and FUSE
// options. False, with the message in `err`, on an option cmkfs does not know.
bool rewrite_mount_args(std::vector<std::string>& args, const std::set<std::string>& commands, std::ostream& err) {
  if (args.size() >= 2 && !args[0].empty() && args[0][0] != '-' && !commands.contains(args[0])) {
    args.insert(args.begin(), "mount");  // how mount.fuse3 (fstab, mount -t fuse.cmkfs) calls us
  }
  if (args.empty() || args[0] != "mount") return true;
  std::vector<std::string> out, fuse;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string list;
    if (args[i] == "-o" && i + 1 < args.size()) list = args[++i];
    else if (args[i].rfind("-o", 0) == 0 && args[i].size() > 2 && args[i][2] != '-') list = args[i].substr(2);
    else {
      out.push_back(args[i]);
      continue;
    }
    for (size_t pos = 0; pos <= list.size();) {
      size_t comma = list.find(',', pos);
      std::string opt = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      pos = comma == std::string::npos ? list.size() + 1 : comma + 1;
      if (opt.empty()) continue;
      size_t eq = opt.find('=');
      std::string key = opt.substr(0, eq);
      if (kIgnored.contains(key) || key.rfind("x-", 0) == 0 || key == "comment") continue;
      if (kFuseOptions.contains(key) && eq == std::string::npos) {
        fuse.push_back(opt);
      } else if (kValueFlags.contains(key) && eq != std::string::npos) {
        out.push_back("--" + key);
        out.push_back(opt.substr(eq + 1));
      } else if (kBareFlags.contains(key) && eq == std::string::npos) {
        out.push_back("--" + key);
      } else if (key == "max_read" && eq != std::string::npos) {
        fuse.push_back(opt);
      } else {
        err << "cmkfs: unknown mount option " << opt << " (see cmkfs mount --help; flags go as name=value)\n";
        return false;
      }
    }
  }
  if (!fuse.empty()) {
    std::string joined;
    for (const auto& f : fuse) joined += (joined.empty() ? "" : ",") + f;
    out.push_back("-o");
    out.push_back(joined);
  }
  args = std::move(out);
  return true;
}

}  // namespace

int parse_command_line(int argc, const char* const* argv, Command* cmd, std::ostream& out, std::ostream& err) {
  std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  const std::set<std::string> commands = {"init", "mount", "umount", "view", "fsck", "inspect", "cat", "export",
                                          "encryption", "trust", "status", "console", "completion", "manpage", "--help", "-h", "--version"};
  // One word that is no command: a typo, most likely (`cmkfs STORE MNT` has two).
  if (args.size() == 1 && !args[0].empty() && args[0][0] != '-' && !commands.contains(args[0])) {
    std::string guess = nearest(args[0], {commands.begin(), commands.end()});
    err << "cmkfs: unknown command '" << args[0] << "'" << (guess.empty() ? "" : "; did you mean '" + guess + "'?")
        << " (cmkfs --help lists them)\n";
    return kExitUsage;
  }
  if (!rewrite_mount_args(args, commands, err)) return kExitUsage;
  std::vector<const char*> rewritten = {argc > 0 ? argv[0] : "cmkfs"};
  for (const auto& a : args) rewritten.push_back(a.c_str());
  return parse_args(static_cast<int>(rewritten.size()), rewritten.data(), cmd, out, err);
}

namespace {

// A bash completion script from the parser itself, so that it never drifts from --help: the
// subcommands at each level, then the options of the one typed; files for everything else.
std::string bash_completion(const CLI::App& app) {
  std::string cases;
  std::function<void(const CLI::App&, const std::string&)> walk = [&](const CLI::App& a, const std::string& path) {
    std::string words;
    for (const auto* sub : a.get_subcommands({})) {
      if (sub->get_group().empty()) continue;  // hidden
      words += sub->get_name() + " ";
      walk(*sub, path.empty() ? sub->get_name() : path + " " + sub->get_name());
    }
    for (const auto* opt : a.get_options()) {
      for (const auto& name : opt->get_lnames()) words += "--" + name + " ";
      for (const auto& name : opt->get_snames()) words += "-" + name + " ";
    }
    cases += "    \"" + path + "\") words=\"" + words + "\" ;;\n";
  };
  walk(app, "");
  return "# bash completion for cmkfs (cmkfs completion bash)\n"
         "_cmkfs() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]} path= w words\n"
         "  # the subcommands typed so far: every word up to the cursor that is not an option or a value\n"
         "  for w in \"${COMP_WORDS[@]:1:COMP_CWORD-1}\"; do\n"
         "    case \"$w\" in -*) ;; *) _cmkfs_words \"${path:+$path }$w\" >/dev/null && path=\"${path:+$path }$w\" ;; esac\n"
         "  done\n"
         "  words=$(_cmkfs_words \"$path\")\n"
         "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
         "  [[ $cur == -* ]] || COMPREPLY+=($(compgen -f -- \"$cur\"))\n"
         "}\n"
         "_cmkfs_words() {\n"
         "  local words\n"
         "  case \"$1\" in\n" +
         cases +
         "    *) return 1 ;;\n"
         "  esac\n"
         "  echo \"$words\"\n"
         "}\n"
         "complete -o filenames -F _cmkfs cmkfs\n";
}

int parse_args(int argc, const char* const* argv, Command* cmd, std::ostream& out, std::ostream& err) {
  *cmd = Command{};  // every default comes from the option structs
  CLI::App app{"cmkfs: an encrypted FUSE filesystem for container registry storage, with keys you own"};
  app.set_version_flag("--version", "cmkfs 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();  // global options also after the subcommand
  app.add_option("--log-level", cmd->log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--log-format", cmd->log_format, "text, or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));

  std::string chunk_size = format_size(cmd->init.chunk_size);
  auto* init = app.add_subcommand("init", "Turn an empty directory into an encrypted store");
  init->add_option("STORE", cmd->init.store, "The directory to hold the store (created if missing)");
  std::string init_file;
  init->add_option("--from-file", init_file, "A JSON template of these options (store, chunkSize, "
                                             "keyVaultProperties...); options given here win")
      ->check(CLI::ExistingFile);
  init->add_option("--chunk-size", chunk_size, "Encryption chunk size, a power of two from 4KiB to 1MiB")
      ->capture_default_str();
  auto* local_key = init->add_option("--local-key-file", cmd->init.kek.key_file,
                                     "Where to keep the built-in key (default /etc/cmkfs/keys/<store id>.key for root)");
  init->add_option("--audit-log", cmd->init.audit_log,
                   "Key audit log, JSON lines (default /var/log/cmkfs/<store id>.audit.jsonl for root)");
  add_vault_options(init, &cmd->vault, false);
  auto* key_command = init->add_option("--local-key-command", cmd->init.kek.key_command,
                                       "Instead of a key file: a program whose output is the key (run with /bin/sh -c "
                                       "at every mount; prints cmkfs-local-key-v1 HEX or 64 hex digits)");
  std::string objects_url;
  init->add_option("--objects", objects_url,
                   "Where the encrypted objects go: in the store directory (default), rados://POOL[/NAMESPACE] "
                   "or s3://BUCKET[/PREFIX] (the namespace or prefix defaults to the store id; the bucket is "
                   "created if missing)");
  add_object_store_options(init, &cmd->init.objects);
  std::string meta_url;
  init->add_option("--meta", meta_url,
                   "Where the metadata goes: lmdb in the store directory (default), or postgres[://SCHEMA] (the "
                   "schema defaults to cmkfs_<store id>; needs --pg-conninfo)");
  init->add_option("--pg-conninfo", cmd->init.meta.conninfo_file,
                   "PostgreSQL metadata: a file (mode 0600) holding libpq's connection string (host, port, dbname, "
                   "user, password; kept in this host's binding, never in the store)");
  local_key->excludes(init->get_option("--key-encryption-key"));
  key_command->excludes(local_key)->excludes(init->get_option("--key-encryption-key"));

  auto* mount = app.add_subcommand("mount", "Mount a store; returns once the mount is ready");
  mount->add_option("STORE", cmd->mount.store, "The store directory")->required();
  mount->add_option("MOUNTPOINT", cmd->mount.mountpoint, "An existing directory")->required();
  mount->add_flag("-f,--foreground", cmd->mount.foreground, "Stay in the foreground and log to stderr");
  mount->add_option("-o", cmd->mount.fuse_options,
                    "Mount options, comma separated: ro, allow_other (enforces permissions), ...")
      ->allow_extra_args(false);
  mount->add_option("--attr-timeout", cmd->mount.attr_timeout, "Seconds the kernel caches attributes")
      ->capture_default_str();
  mount->add_option("--entry-timeout", cmd->mount.entry_timeout, "Seconds the kernel caches names")
      ->capture_default_str();
  mount->add_option("--threads", cmd->mount.max_threads,
                    "Most FUSE worker threads (default: twice the cores, at least 4; with objects in RADOS or "
                    "S3, eight times, at least 16)");
  bool no_writeback_cache = false;
  mount->add_flag("--no-writeback-cache", no_writeback_cache,
                  "Send every write(2) to cmkfs at once (a full disk is then reported by write(2), not "
                  "by fsync(2) or close(2)); slower for streams of small writes");
  mount->add_flag("--follow", cmd->mount.follow,
                  "Serve read-only a store another cmkfs mount writes (its metadata in PostgreSQL), following "
                  "its changes as they commit");
  bool no_io_uring = false;
  mount->add_flag("--no-io-uring", no_io_uring,
                  "Take every request over /dev/fuse. By default, where the kernel has it (Linux 6.14+; "
                  "as root cmkfs turns on the fuse module's enable_uring), requests come over io_uring, "
                  "one queue per CPU");
  mount->add_flag("--direct-reads", cmd->mount.direct_reads,
                  "Read files opened read-only straight into the reader's buffer, not through the page cache: "
                  "every read is decrypted again, and no plaintext copy fills memory (for a registry's many "
                  "concurrent pulls). Needs io_uring and Linux 6.6+; reads stay cached otherwise");
  mount->add_option("--commit-interval", cmd->mount.commit_interval_ms,
                    "Milliseconds a metadata change (create, rename, unlink) may wait to reach the disk "
                    "with others; fsync(2) and unmount write at once; 0 writes each change alone")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1000.0));
  mount->add_option("--inode-cache", cmd->mount.inode_cache,
                    "Inodes kept whole in memory; past that, idle ones the kernel still references are kept "
                    "as a count and read again on use, so memory does not grow with the kernel's inode cache")
      ->capture_default_str()
      ->check(CLI::Range(size_t{16}, size_t{1} << 30));
  std::string read_ahead = format_size(cmd->mount.read_ahead);
  mount->add_option("--read-ahead", read_ahead,
                    "The kernel's readahead window for sequential reads, set as root (0: the kernel's 128KiB)")
      ->capture_default_str();
  mount->add_option("--log-file", cmd->mount.log_file,
                    "Log file when daemonized (default /var/log/cmkfs/<store id>.log for root)");
  mount->add_option("--audit-log", cmd->mount.audit_log,
                    "Key audit log, JSON lines (default /var/log/cmkfs/<store id>.audit.jsonl for root)");
  const MonitorOptions& m = cmd->mount.monitor;
  std::string check_interval = format_duration(m.check_interval), rotation_poll = format_duration(m.rotation_poll_interval),
              offline_grace = format_duration(m.offline_grace), vault_timeout = format_duration(m.request_timeout);
  mount->add_option("--key-check-interval", check_interval, "How often access to a vault key is proven")
      ->capture_default_str();
  mount->add_option("--rotation-poll-interval", rotation_poll,
                    "How often the latest key version is looked up, for automatic rotation")
      ->capture_default_str();
  mount->add_option("--offline-grace", offline_grace,
                    "How long to serve from the cached key while the vault is unreachable")
      ->capture_default_str();
  mount->add_option("--metrics-listen", cmd->mount.metrics_listen,
                    "Serve Prometheus metrics at http://HOST:PORT/metrics (FUSE requests, key state and checks)");
  mount->add_option("--vault-timeout", vault_timeout, "How long one request to the vault may take")
      ->capture_default_str();

  auto* umount = app.add_subcommand("umount", "Unmount a store or a view, waiting until everything is flushed");
  umount->add_option("MOUNTPOINT", cmd->mountpoint, "The mountpoint, or a view's directory")->required();

  auto* view = app.add_subcommand("view", "Show the registry in a store as images, read-only: VIEWDIR/<repository>:<tag>/"
                                          "{manifest.json,config.json,layers/}; `cmkfs umount VIEWDIR` removes it");
  std::vector<std::string> view_paths;
  view->add_option("PATHS", view_paths, "MOUNTPOINT VIEWDIR (a mounted store), or VIEWDIR with --store")
      ->required()
      ->expected(1, 2);
  view->add_option("--store", cmd->mount.store, "An unmounted store to view, with its key (served by its own daemon)");
  view->add_option("--registry-root", cmd->mount.registry_root,
                   "The registry's rootdirectory inside the store (default: the directory holding docker/registry/v2)");
  view->add_flag("-f,--foreground", cmd->mount.foreground, "With --store: stay in the foreground, log to stderr");
  view->add_option("--log-file", cmd->mount.log_file, "With --store: the log file when daemonized");

  auto* fsck = app.add_subcommand("fsck", "Check a store offline: every record, link and chunk");
  fsck->add_option("STORE", cmd->store, "The store directory (not mounted)")->required();
  fsck->add_flag("--json", cmd->fsck.json, "The report as JSON");
  fsck->add_flag("--repair", cmd->fsck.repair,
                 "Fix what is safe to fix: leaked objects, objects longer than their file, what a crash left; "
                 "authenticated data is never changed");

  auto* inspect = app.add_subcommand("inspect", "Show what a store holds (repositories, tags, blobs, OCI layouts) and which key protects it, as JSON");
  inspect->add_option("STORE", cmd->store, "The store directory, or its mountpoint when mounted")->required();
  inspect->add_option("--registry-root", cmd->registry_root,
                      "The registry's rootdirectory inside the store")->capture_default_str();
  inspect->add_option("--image", cmd->image,
                      "One image, REPOSITORY:TAG or REPOSITORY@sha256:HEX: what skopeo inspect shows, and the keys "
                      "sealing its blobs");
  inspect->add_flag("--json", cmd->json, "With --image: JSON instead of text");

  auto* status = app.add_subcommand("status", "List every cmkfs mount and view on this host: store, key state, daemon");
  status->add_flag("--json", cmd->json, "JSON instead of a table");

  auto* console = app.add_subcommand("console", "Serve a web console of this host's stores (HTTPS, loopback only by "
                                                "default): encryption, key state and timeline, change key");
  console->add_option("--listen", cmd->console.listen, "HOST:PORT (port 0: any free port)")->capture_default_str();
  console->add_option("--store", cmd->console.stores, "A store to show besides the mounted ones and /etc/cmkfs/mounts");
  console->add_option("--audit-log", cmd->console.audit_log,
                      "The console's audit log, JSON lines (default /var/log/cmkfs/console.audit.jsonl)");
  console->add_option("--session-idle", cmd->console.idle_seconds, "Seconds a session may go unused before it ends")
      ->capture_default_str();
  console->add_flag("--set-password", cmd->set_password, "Set the admin password (read from stdin or the terminal) "
                                                         "and exit");
  console->add_option("--password-file", cmd->password_file, "With --set-password: read it from this file");

  auto* cat = app.add_subcommand("cat", "Print one file of a store (unmounted: read with its key)");
  cat->add_option("STORE", cmd->store, "The store directory, or a mountpoint")->required();
  cat->add_option("PATH", cmd->path, "The file, from the store's root")->required();
  auto* exp = app.add_subcommand("export", "Copy a file or a tree out of a store (unmounted: read with its key)");
  exp->add_option("STORE", cmd->store, "The store directory, or a mountpoint")->required();
  exp->add_option("PATH", cmd->path, "What to copy, from the store's root ('/' for everything)")->required();
  exp->add_option("DEST", cmd->dest, "Where to put it; must not exist")->required();

  auto* encryption = app.add_subcommand("encryption", "Show or change how the store's data key is protected");
  encryption->require_subcommand(1);
  auto* show = encryption->add_subcommand("show", "Print the encryption settings (and, if mounted, the live key state) as JSON");
  show->add_option("STORE", cmd->store, "The store directory")->required();
  auto* enable = encryption->add_subcommand("enable", "Move a local-key store to a vault key (there is no way back)");
  enable->add_option("STORE", cmd->store, "The store directory")->required();
  add_vault_options(enable, &cmd->vault, true);
  auto* rotate = encryption->add_subcommand("rotate-key", "Rewrap the data key under another key, version or key file");
  rotate->add_option("STORE", cmd->store, "The store directory")->required();
  add_vault_options(rotate, &cmd->vault, false);
  rotate->add_option("--local-key-file", cmd->local.file, "A local-key store: the new key file (made if missing)");
  rotate->add_option("--local-key-command", cmd->local.command, "A local-key store: a program that prints the new key");

  auto* rotate_dek = encryption->add_subcommand(
      "rotate-data-key", "Start a new data key and re-encrypt everything under it (in the background when mounted)");
  rotate_dek->add_option("STORE", cmd->store, "The store directory, or the mountpoint of a mounted store")->required();

  auto* trust = app.add_subcommand("trust", "Bind a store to this host (moved here, or made elsewhere), or re-point its "
                                            "binding, with key settings you give");
  trust->add_option("STORE", cmd->trust.store, "The store directory")->required();
  trust->add_option("--local-key-file", cmd->trust.local.file, "The key file of a local-key store");
  trust->add_option("--local-key-command", cmd->trust.local.command, "Or the program that prints it");
  add_vault_options(trust, &cmd->vault, false);
  add_object_store_options(trust, &cmd->trust.objects);
  trust->add_option("--fingerprint", cmd->trust.fingerprint,
                    "The data key's fingerprint as `cmkfs encryption show` printed it where the store came from");
  std::string trust_meta;
  trust->add_option("--meta", trust_meta,
                    "A store whose metadata is in PostgreSQL: postgres://SCHEMA (as `encryption show` names it); "
                    "STORE is then this host's directory of it, made if missing");
  trust->add_option("--pg-conninfo", cmd->trust.meta.conninfo_file,
                    "With --meta: a file (mode 0600) holding libpq's connection string");

  auto* completion = app.add_subcommand("completion", "Print the bash completion script (made from these commands)");
  std::string shell = "bash";
  completion->add_option("SHELL", shell, "bash")->check(CLI::IsMember({"bash"}));
  // Hidden (no group): the build writes cmkfs.1 with it.
  auto* manpage = app.add_subcommand("manpage", "Print the man page (roff) made from these commands")->group("");

  // The offline commands that unwrap or rewrap a key audit it where they are told.
  for (auto* sub : {fsck, inspect, cat, exp, enable, rotate, rotate_dek, trust}) {
    sub->add_option("--audit-log", cmd->audit_log, "Key audit log, JSON lines (default /var/log/cmkfs/<store id>.audit.jsonl)");
  }
  // Every command that reaches the key provider bounds its requests; four times this without an
  // answer (a PKCS#11 module that hangs) and the command gives up.
  std::string provider_timeout;
  for (auto* sub : {init, fsck, inspect, cat, exp, enable, rotate, rotate_dek, trust}) {
    sub->add_option("--vault-timeout", provider_timeout,
                    "How long one request to the key provider may take (default 10s); a call unanswered for four "
                    "times that ends the command");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e, out, err);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (!set_duration(provider_timeout, &cmd->provider_timeout, "--vault-timeout", err)) return kExitUsage;
  if (init->parsed()) {
    cmd->kind = Command::Kind::kInit;
    if (!init_file.empty() &&
        !read_init_template(init_file, cmd, &chunk_size, init->get_option("--chunk-size")->count() > 0, err)) {
      return kExitUsage;
    }
    if (cmd->init.store.empty()) {
      err << "cmkfs: init needs STORE (or \"store\" in --from-file)\n";
      return kExitUsage;
    }
    auto size = parse_size(chunk_size);
    if (!size || !crypto::ChunkLayout::valid_chunk_size(*size)) {
      err << "cmkfs: --chunk-size " << chunk_size << " is not a power of two from 4KiB to 1MiB\n";
      return kExitUsage;
    }
    cmd->init.chunk_size = static_cast<uint32_t>(*size);
    if (!objects_url.empty()) {
      auto objects = ObjectsConfig::from_url(objects_url);
      if (!objects.ok()) {
        err << "cmkfs: " << printable(objects.status().message()) << "\n";
        return kExitUsage;
      }
      const ObjectsConfig& given = cmd->init.objects;
      if (!given.conf.empty()) objects->conf = given.conf;
      if (!given.user.empty()) objects->user = given.user;
      if (!given.region.empty()) objects->region = given.region;
      objects->endpoint = given.endpoint, objects->credentials = given.credentials, objects->ca = given.ca;
      if (Status s = objects->check_host_part(); !s.ok()) {
        err << "cmkfs: " << printable(s.message()) << "\n";
        return kExitUsage;
      }
      cmd->init.objects = std::move(*objects);
    }
    if (!parse_meta_options(meta_url, &cmd->init.meta, err)) return kExitUsage;
    if (!cmd->vault.key_encryption_key.empty()) cmd->init.kek.provider = keyclient::ProviderKind::kVault;
  } else if (mount->parsed()) {
    cmd->kind = Command::Kind::kMount;
    cmd->mount.writeback_cache = !no_writeback_cache;
    cmd->mount.io_uring = !no_io_uring;
    cmd->mount.monitor.writes = !cmd->mount.follow;
    auto ra = parse_size(read_ahead);
    if (!ra || *ra > (uint64_t{1} << 30)) {
      err << "cmkfs: --read-ahead " << read_ahead << " is not a size up to 1GiB (e.g. 4MiB, or 0)\n";
      return kExitUsage;
    }
    cmd->mount.read_ahead = *ra;
    if (!set_duration(check_interval, &cmd->mount.monitor.check_interval, "--key-check-interval", err) ||
        !set_duration(rotation_poll, &cmd->mount.monitor.rotation_poll_interval, "--rotation-poll-interval", err) ||
        !set_duration(offline_grace, &cmd->mount.monitor.offline_grace, "--offline-grace", err) ||
        !set_duration(vault_timeout, &cmd->mount.monitor.request_timeout, "--vault-timeout", err)) {
      return kExitUsage;
    }
  } else if (inspect->parsed()) {
    cmd->kind = Command::Kind::kInspect;
    if (cmd->json && cmd->image.empty()) {
      err << "cmkfs: --json goes with --image (inspect prints JSON anyway)\n";
      return kExitUsage;
    }
  } else if (completion->parsed()) {
    out << bash_completion(app);
    return kExitOk;
  } else if (manpage->parsed()) {
    out << man_page(app, app.version());
    return kExitOk;
  } else if (status->parsed()) {
    cmd->kind = Command::Kind::kStatus;
  } else if (console->parsed()) {
    cmd->kind = Command::Kind::kConsole;
  } else if (cat->parsed()) {
    cmd->kind = Command::Kind::kCat;
  } else if (exp->parsed()) {
    cmd->kind = Command::Kind::kExport;
  } else if (fsck->parsed()) {
    cmd->kind = Command::Kind::kFsck;
  } else if (view->parsed()) {
    cmd->kind = Command::Kind::kView;
    bool offline = !cmd->mount.store.empty();
    if (view_paths.size() != (offline ? 1u : 2u)) {
      err << "cmkfs: view takes MOUNTPOINT VIEWDIR, or --store STORE VIEWDIR\n";
      return kExitUsage;
    }
    cmd->mount.view_only = offline;
    cmd->mount.mountpoint = view_paths.back();
    if (!offline) cmd->mountpoint = view_paths.front();
  } else if (umount->parsed()) {
    cmd->kind = Command::Kind::kUmount;
  } else if (show->parsed()) {
    cmd->kind = Command::Kind::kEncryptionShow;
  } else if (enable->parsed()) {
    cmd->kind = Command::Kind::kEncryptionEnable;
  } else if (rotate->parsed()) {
    cmd->kind = Command::Kind::kRotateKey;
  } else if (rotate_dek->parsed()) {
    cmd->kind = Command::Kind::kRotateDataKey;
  } else if (trust->parsed()) {
    cmd->kind = Command::Kind::kTrust;
    cmd->trust.vault = cmd->vault;
    if (!parse_meta_options(trust_meta, &cmd->trust.meta, err)) return kExitUsage;
    if (!cmd->trust.meta.lmdb() && cmd->trust.meta.schema.empty()) {
      err << "cmkfs: trust --meta needs the schema: postgres://SCHEMA (cmkfs encryption show names it)\n";
      return kExitUsage;
    }
  }
  return -1;
}

}  // namespace
}  // namespace cmkfs::fs
