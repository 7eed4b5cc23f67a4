#include "fs/cli/manpage.h"

#include <CLI/CLI.hpp>

namespace cmkfs::fs {
namespace {

// Text as roff shows it: backslashes and hyphens escaped, no line starting a request.
std::string roff(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') out += "\\e";
    else if (c == '-') out += "\\-";
    else out += c;
  }
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out = "\\&" + out;
  return out;
}

bool visible(const CLI::App& a) { return !a.get_group().empty(); }

std::string option_term(const CLI::Option& o) {
  std::string names;
  for (const auto& n : o.get_snames()) names += (names.empty() ? "" : ", ") + std::string("\\fB\\-") + roff(n) + "\\fR";
  for (const auto& n : o.get_lnames()) names += (names.empty() ? "" : ", ") + std::string("\\fB\\-\\-") + roff(n) + "\\fR";
  if (o.get_positional() && names.empty()) return "\\fI" + roff(o.get_name(true)) + "\\fR";
  if (o.get_items_expected_max() > 0) names += " \\fI" + roff(o.get_type_name()) + "\\fR";
  return names;
}

// The options of one command (--help left out: this page is the help).
void options(std::string& out, const CLI::App& a) {
  for (const auto* o : a.get_options()) {
    if (o->get_group().empty() || o->get_lnames() == std::vector<std::string>{"help"}) continue;
    out += ".TP\n" + option_term(*o) + "\n" + roff(o->get_description());
    if (!o->get_default_str().empty()) out += " (default: " + roff(o->get_default_str()) + ")";
    if (o->get_required() && !o->get_positional()) out += " Required.";
    out += "\n";
  }
}

void command(std::string& out, const CLI::App& a, const std::string& path) {
  std::string usage = path;
  for (const auto* o : a.get_options()) {
    if (!o->get_positional() || o->get_group().empty()) continue;
    std::string name = o->get_name(true);
    usage += " " + (o->get_required() ? name : "[" + name + "]");
  }
  auto subs = a.get_subcommands([](const CLI::App* s) { return visible(*s); });
  if (!subs.empty()) usage += " COMMAND";
  out += ".SS \"" + roff(usage) + "\"\n" + roff(a.get_description()) + "\n";
  options(out, a);
  for (const auto* sub : subs) command(out, *sub, path + " " + sub->get_name());
}

}  // namespace

std::string man_page(const CLI::App& app, const std::string& version) {
  std::string out = ".TH CMKFS 1 \"\" \"" + roff(version) + "\" \"User Commands\"\n";
  out += ".SH NAME\ncmkfs \\- " + roff(app.get_description().substr(app.get_description().find(": ") + 2)) + "\n";
  out += ".SH SYNOPSIS\n.B cmkfs\n[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]\n.br\n"
         ".B mount.fuse3\n\\fISTORE MOUNTPOINT\\fR \\-t cmkfs \\-o \\fIOPTIONS\\fR\n";
  out += ".SH DESCRIPTION\n" + roff(app.get_description()) +
         ".\nEvery chunk of every file is sealed with AES\\-256\\-GCM under a data key that a key vault, "
         "a PKCS#11 token, a KMS v2 plugin or a local key file wraps. Revoke the key and every access "
         "through the mount fails with EACCES; restore it and the mount serves again.\n"
         ".PP\nIn /etc/fstab (type fuse.cmkfs) or with \\fBmount \\-t fuse.cmkfs\\fR, every option of "
         "\\fBcmkfs mount\\fR is also an \\fB\\-o\\fR option (key\\-check\\-interval=30s); _netdev, nofail, "
         "auto, noauto, user, users and x\\-systemd.* are accepted and left to mount(8) and systemd.\n";
  out += ".SH OPTIONS\nThese work with every command.\n";
  options(out, app);
  out += ".SH COMMANDS\n";
  for (const auto* sub : app.get_subcommands([](const CLI::App* s) { return visible(*s); })) {
    command(out, *sub, "cmkfs " + sub->get_name());
  }
  out += ".SH EXIT STATUS\n"
         ".TP\n0\nSuccess.\n"
         ".TP\n1\nAny error not listed below.\n"
         ".TP\n2\nA bad command line.\n"
         ".TP\n10\nThe directory is not a store, is damaged, or is unsafe to open.\n"
         ".TP\n11\nThe key is missing, wrong or refused, or the store is not what this host bound.\n"
         ".TP\n12\nThe mountpoint is missing or busy, or the mount failed (also for umount).\n"
         ".TP\n13\nThe store is in use by another cmkfs.\n";
  out += ".SH FILES\n"
         ".TP\n/etc/cmkfs/mounts/\nThe host's trust anchor: one binding per store (its key settings, pinned).\n"
         ".TP\n/var/log/cmkfs/\\fIID\\fR.audit.jsonl\nThe key audit log of a store.\n"
         ".TP\n/run/cmkfs/\nThe live state of running mounts (cmkfs status) and their control sockets.\n";
  out += ".SH ENVIRONMENT\n"
         ".TP\nNOTIFY_SOCKET, WATCHDOG_USEC\nSet by systemd: the daemon reports readiness, its key state and "
         "keep\\-alives.\n"
         ".TP\nJOURNAL_STREAM\nSet by systemd: log lines go to the journal with their priority.\n"
         ".TP\nAZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST\n"
         "Read by init, trust and encryption for Entra credentials when no option gives them, and pinned "
         "in the host binding: a mount does not read them.\n"
         ".TP\nIDENTITY_HEADER\nThe app\\-service credential's secret header, read when a token is "
         "fetched unless \\-\\-credential\\-file holds it.\n";
  out += ".SH SEE ALSO\ncmkfs\\-vault(1), mount.fuse3(8), fstab(5), systemd.mount(5)\n";
  return out;
}

}  // namespace cmkfs::fs
