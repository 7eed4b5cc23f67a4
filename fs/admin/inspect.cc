// cmkfs inspect: what an unmounted store holds, read with its key, as JSON. For a distribution
// registry's layout (docker/registry/v2 under the registry's root directory): each repository
// with its tags and the manifest digest each points at, and the blobs' count and size. For every
// OCI image layout in the store (a directory with an oci-layout file): its manifests and refs.
// And which key protects all of it: the data-key generation and the key-encryption key wrapping it.
#include "fs/admin/admin.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <ostream>
#include <set>

#include "crypto/base/hex.h"
#include "fs/admin/offline.h"

namespace cmkfs::fs {
namespace {

using nlohmann::json;

// The store's tree through one read transaction.
class TreeView {
 public:
  TreeView(OfflineStore& o, meta::Txn& txn) : o_(o), txn_(txn) {}

  // The inode at `path` ("/a/b", "a/b" or "/"), from the root; ENOENT when a part is missing.
  Result<meta::InodeRecord> at(const std::string& path) {
    uint64_t ino = meta::kRootIno;
    size_t pos = 0;
    while (pos < path.size()) {
      size_t slash = path.find('/', pos);
      std::string part = path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
      pos = slash == std::string::npos ? path.size() : slash + 1;
      if (part.empty() || part == ".") continue;
      auto e = txn_.lookup(ino, part);
      if (!e.ok()) return e.status();
      ino = e->ino;
    }
    return txn_.get_inode(ino);
  }
  Result<std::vector<meta::DirEntry>> children(uint64_t dir) {
    std::vector<meta::DirEntry> out;
    Status s = txn_.list_entries(dir, 0, [&](const meta::DirEntry& e) { return out.push_back(e), true; });
    if (!s.ok()) return s;
    return out;
  }
  Result<meta::InodeRecord> inode(uint64_t ino) { return txn_.get_inode(ino); }
  Result<meta::InodeRecord> child(uint64_t dir, std::string_view name) {
    auto e = txn_.lookup(dir, name);
    if (!e.ok()) return e.status();
    return txn_.get_inode(e->ino);
  }
  // A small file's content (link files, index.json), at most `limit` bytes.
  Result<std::string> content(const meta::InodeRecord& rec, uint64_t limit) {
    if (!S_ISREG(rec.mode)) return Status::InvalidArgument("not a regular file");
    if (rec.size > limit) return Status::InvalidArgument("too large to inspect");
    std::string text;
    Status s = read_plaintext(*o_.store, o_.keyring, rec, [&](crypto::Bytes b) { text.append(b.begin(), b.end()); });
    if (!s.ok()) return s;
    return text;
  }

 private:
  OfflineStore& o_;
  meta::Txn& txn_;
};

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// _manifests/tags/<tag>/current/link holds the digest the tag points at.
std::string tag_digest(TreeView& t, uint64_t tag_dir) {
  auto current = t.child(tag_dir, "current");
  auto link = current.ok() ? t.child(current->ino, "link") : current;
  auto text = link.ok() ? t.content(*link, 4096) : Result<std::string>(link.status());
  return text.ok() ? trimmed(*text) : "unreadable: " + text.status().message();
}

json repository(TreeView& t, const std::string& name, uint64_t manifests) {
  json repo = {{"name", name}, {"tags", json::object()}, {"manifestRevisions", 0}};
  if (auto tags = t.child(manifests, "tags"); tags.ok()) {
    auto each = t.children(tags->ino);
    for (const auto& tag : each.ok() ? *each : std::vector<meta::DirEntry>{}) {
      repo["tags"][tag.name] = tag_digest(t, tag.ino);
    }
  }
  if (auto revisions = t.child(manifests, "revisions"); revisions.ok()) {  // revisions/<algo>/<hex>
    auto algos = t.children(revisions->ino);
    size_t n = 0;
    for (const auto& algo : algos.ok() ? *algos : std::vector<meta::DirEntry>{}) {
      auto digests = t.children(algo.ino);
      n += digests.ok() ? digests->size() : 0;
    }
    repo["manifestRevisions"] = n;
  }
  return repo;
}

// Directories below repositories/ that hold a `_manifests` directory are repositories, named by
// their path from repositories/ ("apps/web").
Status find_repositories(TreeView& t, uint64_t dir, const std::string& name, int depth, json& repos) {
  auto kids = t.children(dir);
  if (!kids.ok()) return kids.status();
  for (const auto& e : *kids) {
    if (e.type != S_IFDIR) continue;
    if (e.name == "_manifests") {
      repos.push_back(repository(t, name, e.ino));
    } else if (e.name[0] != '_' && depth < 32) {
      CMKFS_RETURN_IF_ERROR(find_repositories(t, e.ino, name.empty() ? e.name : name + "/" + e.name, depth + 1, repos));
    }
  }
  return Status::Ok();
}

// blobs/sha256/<xx>/<hex>/data: count, bytes and the data-key generations that seal them.
Status count_blobs(TreeView& t, uint64_t blobs, json& out) {
  uint64_t count = 0, bytes = 0;
  std::set<uint32_t> generations;
  auto algos = t.children(blobs);
  if (!algos.ok()) return algos.status();
  for (const auto& algo : *algos) {
    auto prefixes = t.children(algo.ino);
    if (!prefixes.ok()) return prefixes.status();
    for (const auto& prefix : *prefixes) {
      auto digests = t.children(prefix.ino);
      if (!digests.ok()) return digests.status();
      for (const auto& d : *digests) {
        auto data = t.child(d.ino, "data");
        if (data.status().code() == ENOENT) continue;  // an upload not committed yet
        if (!data.ok()) return data.status();
        ++count, bytes += data->size;
        generations.insert(data->dek_generation);
      }
    }
  }
  out = {{"count", count}, {"bytes", bytes}, {"dataKeyGenerations", generations}};
  return Status::Ok();
}

// Every directory holding an oci-layout file, with the manifests its index.json lists.
Status find_oci_layouts(TreeView& t, uint64_t dir, const std::string& path, int depth, json& layouts) {
  auto kids = t.children(dir);
  if (!kids.ok()) return kids.status();
  const meta::DirEntry* index = nullptr;
  bool is_layout = false;
  for (const auto& e : *kids) {
    if (e.name == "oci-layout") is_layout = true;
    if (e.name == "index.json") index = &e;
  }
  if (is_layout && index != nullptr) {
    json layout = {{"path", path.empty() ? "/" : path}, {"manifests", json::array()}};
    auto rec = t.inode(index->ino);
    auto text = rec.ok() ? t.content(*rec, 1 << 20) : Result<std::string>(rec.status());
    json parsed = text.ok() ? json::parse(*text, nullptr, /*allow_exceptions=*/false) : json();
    if (parsed.is_object() && parsed.contains("manifests") && parsed["manifests"].is_array()) {
      for (const auto& m : parsed["manifests"]) {
        json ref = m.value("annotations", json::object()).value("org.opencontainers.image.ref.name", "");
        layout["manifests"].push_back({{"ref", ref}, {"digest", m.value("digest", "")}, {"size", m.value("size", 0)}});
      }
    } else {
      layout["error"] = text.ok() ? "index.json is not an OCI index" : text.status().message();
    }
    layouts.push_back(layout);
  }
  for (const auto& e : *kids) {
    if (e.type == S_IFDIR && depth < 32 && e.name != "blobs") {
      CMKFS_RETURN_IF_ERROR(find_oci_layouts(t, e.ino, path + "/" + e.name, depth + 1, layouts));
    }
  }
  return Status::Ok();
}

}  // namespace

int run_inspect(const std::string& store, const std::string& registry_root, std::ostream& out, std::ostream& err) {
  int code = kExitOk;
  auto o = open_offline(store, "inspect", err, &code);
  if (!o) return code;
  OpenStore& st = *o->store;
  auto access = o->keyring.access();
  auto txn = st.meta->begin(false, &access.store_keys());
  if (!txn.ok()) return err << "cmkfs: " << txn.status().message() << "\n", kExitNotAStore;
  TreeView t(*o, *txn);
  bool vault = st.kek.provider == keyclient::ProviderKind::kVault;
  json report = {{"store", to_hex(st.super.store_id)},
                 {"protection", {{"keyEncryptionKey", vault ? st.kek.versioned_key_identifier : "local key file"},
                                 {"dataKeyGeneration", st.super.dek_generation}}}};
  Status s;
  std::string root = registry_root;
  while (!root.empty() && root.back() == '/') root.pop_back();
  std::string v2 = root + "/docker/registry/v2";
  if (auto repos_dir = t.at(v2 + "/repositories"); repos_dir.ok()) {
    json repos = json::array();
    s = find_repositories(t, repos_dir->ino, "", 0, repos);
    std::sort(repos.begin(), repos.end(), [](const json& a, const json& b) { return a["name"] < b["name"]; });
    report["registry"] = {{"root", v2}, {"repositories", repos}};
    if (auto blobs = t.at(v2 + "/blobs"); s.ok() && blobs.ok()) {
      s = count_blobs(t, blobs->ino, report["registry"]["blobs"]);
    }
  }
  json layouts = json::array();
  if (s.ok()) s = find_oci_layouts(t, meta::kRootIno, "", 0, layouts);
  report["ociLayouts"] = layouts;
  if (!s.ok()) return err << "cmkfs: " << s.message() << "\n", kExitNotAStore;
  out << report.dump(2) << "\n";
  return kExitOk;
}

}  // namespace cmkfs::fs
