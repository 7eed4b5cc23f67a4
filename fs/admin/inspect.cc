// cmkfs inspect: what a store holds, read with its key (or through its mount, when mounted), as
// JSON. For a distribution registry's layout (docker/registry/v2 under the registry's root
// directory): each repository with its tags and the manifest digest each points at, and the
// blobs' count and size. For every OCI image layout in the store (a directory with an oci-layout
// file): its manifests and refs. And which key protects all of it: the data-key generation and
// the key-encryption key wrapping it.
#include "fs/admin/admin.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <ostream>
#include <set>
#include <sstream>

#include "crypto/base/hex.h"
#include "crypto/base/json_parse.h"
#include "fs/admin/tree.h"
#include "fs/store/store.h"

namespace cmkfs::fs {
namespace {

using nlohmann::json;

std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "/" + b; }

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::vector<std::string> names(StoreTree& t, const std::string& dir) {
  auto n = t.list(dir);
  return n.ok() ? *n : std::vector<std::string>{};
}

bool is_dir(StoreTree& t, const std::string& path) {
  auto st = t.stat(path);
  return st.ok() && S_ISDIR(st->mode);
}

// _manifests/tags/<tag>/current/link holds the digest the tag points at.
std::string tag_digest(StoreTree& t, const std::string& tag_dir) {
  auto text = t.read_small(tag_dir + "/current/link", 4096);
  return text.ok() ? trimmed(*text) : "unreadable: " + text.status().message();
}

json repository(StoreTree& t, const std::string& name, const std::string& manifests) {
  json repo = {{"name", name}, {"tags", json::object()}, {"manifestRevisions", 0}};
  for (const auto& tag : names(t, manifests + "/tags")) repo["tags"][tag] = tag_digest(t, manifests + "/tags/" + tag);
  size_t n = 0;
  for (const auto& algo : names(t, manifests + "/revisions")) n += names(t, manifests + "/revisions/" + algo).size();
  repo["manifestRevisions"] = n;
  return repo;
}

// Directories below repositories/ that hold a `_manifests` directory are repositories, named by
// their path from repositories/ ("apps/web").
void find_repositories(StoreTree& t, const std::string& dir, const std::string& name, int depth, json& repos) {
  for (const auto& e : names(t, dir)) {
    std::string path = dir + "/" + e;
    if (!is_dir(t, path)) continue;
    if (e == "_manifests") repos.push_back(repository(t, name, path));
    else if (e[0] != '_' && depth < 32) find_repositories(t, path, join(name, e), depth + 1, repos);
  }
}

// blobs/sha256/<xx>/<hex>/data: count, bytes and (read offline) the data-key generations that
// seal them.
json count_blobs(StoreTree& t, const std::string& blobs) {
  uint64_t count = 0, bytes = 0;
  std::set<uint32_t> generations;
  for (const auto& algo : names(t, blobs)) {
    for (const auto& prefix : names(t, blobs + "/" + algo)) {
      for (const auto& d : names(t, blobs + "/" + algo + "/" + prefix)) {
        auto data = t.stat(blobs + "/" + algo + "/" + prefix + "/" + d + "/data");
        if (!data.ok()) continue;  // an upload not committed yet
        ++count, bytes += data->size;
        if (data->dek_generation) generations.insert(*data->dek_generation);
      }
    }
  }
  json out = {{"count", count}, {"bytes", bytes}};
  if (!t.mounted()) out["dataKeyGenerations"] = generations;
  return out;
}

// Every directory holding an oci-layout file, with the manifests its index.json lists.
void find_oci_layouts(StoreTree& t, const std::string& dir, int depth, json& layouts) {
  auto kids = names(t, dir);
  bool is_layout = std::count(kids.begin(), kids.end(), "oci-layout") > 0;
  if (is_layout && std::count(kids.begin(), kids.end(), "index.json") > 0) {
    json layout = {{"path", "/" + dir}, {"manifests", json::array()}};
    auto text = t.read_small(join(dir, "index.json"), 1 << 20);
    json parsed = text.ok() ? parse_untrusted_json(*text) : json();
    if (parsed.is_object() && parsed.contains("manifests") && parsed["manifests"].is_array()) {
      for (const auto& m : parsed["manifests"]) {
        if (!m.is_object()) continue;
        json annotations = m.contains("annotations") && m["annotations"].is_object() ? m["annotations"] : json::object();
        json ref = annotations.value("org.opencontainers.image.ref.name", "");
        layout["manifests"].push_back({{"ref", ref}, {"digest", m.value("digest", "")}, {"size", m.value("size", 0)}});
      }
    } else {
      layout["error"] = text.ok() ? "index.json is not an OCI index" : text.status().message();
    }
    layouts.push_back(layout);
  }
  for (const auto& e : kids) {
    std::string path = join(dir, e);
    if (depth < 32 && e != "blobs" && is_dir(t, path)) find_oci_layouts(t, path, depth + 1, layouts);
  }
}

}  // namespace

int run_inspect(const std::string& store, const std::string& mountpoint, const std::string& registry_root,
                std::ostream& out, std::ostream& err) {
  int code = kExitOk;
  auto tree = open_tree(store, mountpoint, "inspect", err, &code);
  if (!tree) return code;
  // Which key protects it: as encryption show says (which also reads a mounted store).
  std::ostringstream shown;
  Status s = show_encryption(store, shown);
  if (!s.ok()) return err << "cmkfs: " << s.message() << "\n", exit_code_for(s);
  json show = json::parse(shown.str(), nullptr, false);
  json kv = show.value("keyVaultProperties", json::object());
  json report = {{"store", show.value("storeId", "")},
                 {"protection", {{"keyEncryptionKey", kv.value("versionedKeyIdentifier", json()).is_string()
                                                           ? kv["versionedKeyIdentifier"]
                                                           : json("local key file")},
                                 {"dataKeyGeneration", show.contains("liveKeyState")
                                                           ? show["liveKeyState"].value("dataKeyGeneration", 0)
                                                           : show.value("dataKeyGeneration", 0)}}}};
  if (tree->mounted()) report["mountpoint"] = mountpoint;
  std::string root = registry_root;
  while (!root.empty() && root.front() == '/') root.erase(0, 1);
  while (!root.empty() && root.back() == '/') root.pop_back();
  std::string v2 = join(root, "docker/registry/v2");
  if (is_dir(*tree, v2 + "/repositories")) {
    json repos = json::array();
    find_repositories(*tree, v2 + "/repositories", "", 0, repos);
    std::sort(repos.begin(), repos.end(), [](const json& a, const json& b) { return a["name"] < b["name"]; });
    report["registry"] = {{"root", "/" + v2}, {"repositories", repos}};
    if (is_dir(*tree, v2 + "/blobs")) report["registry"]["blobs"] = count_blobs(*tree, v2 + "/blobs");
  }
  json layouts = json::array();
  find_oci_layouts(*tree, "", 0, layouts);
  report["ociLayouts"] = layouts;
  out << report.dump(2) << "\n";
  return kExitOk;
}

}  // namespace cmkfs::fs
