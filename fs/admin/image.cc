// cmkfs inspect --image: what `skopeo inspect` prints for one image, read from the store instead
// of a running registry (digest, media type, created, platform, labels, env, layers with sizes),
// plus the data-key generation sealing each blob and the key wrapping the data key. Every blob is
// checked against its digest.
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>

#include "crypto/base/json_parse.h"
#include "crypto/base/printable.h"
#include "fs/admin/admin.h"
#include "fs/admin/tree.h"
#include "fs/store/store.h"
#include "fs/oci/oci.h"

namespace cmkfs::fs {
namespace {

using nlohmann::json;

struct Ref {
  std::string repo, tag;
  std::optional<oci::Digest> digest;
};

Result<Ref> parse_ref(const std::string& text) {
  Ref r;
  size_t at = text.find('@');
  std::string name = text.substr(0, at);
  if (at != std::string::npos) {
    r.digest = oci::parse_digest(text.substr(at + 1));
    if (!r.digest) return Status::InvalidArgument("not a sha256 digest: " + text.substr(at + 1));
  } else {
    size_t colon = name.rfind(':');
    if (colon == std::string::npos || name.find('/', colon) != std::string::npos) {
      return Status::InvalidArgument("name an image as REPOSITORY:TAG or REPOSITORY@sha256:HEX: " + text);
    }
    r.tag = name.substr(colon + 1);
    name = name.substr(0, colon);
    if (!oci::valid_tag(r.tag)) return Status::InvalidArgument("not a tag: " + r.tag);
  }
  for (size_t pos = 0; pos <= name.size();) {
    size_t slash = name.find('/', pos);
    if (!oci::valid_repository_component(name.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos))) {
      return Status::InvalidArgument("not a repository name: " + name);
    }
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  r.repo = name;
  return r;
}

class Registry {
 public:
  Registry(StoreTree& t, std::string root) : t_(t), root_(root.empty() ? "" : root + "/") {}

  std::string blob(const oci::Digest& d) const { return root_ + oci::registry_blob_path(d); }

  // A blob's bytes, checked against its digest.
  Result<std::string> read(const oci::Digest& d, uint64_t max) {
    auto bytes = t_.read_small(blob(d), max);
    if (!bytes.ok()) return Status(bytes.status().code(), "blob " + d.str() + ": " + bytes.status().message());
    if (!oci::digest_matches(d, *bytes)) return Status(EIO, "blob " + d.str() + " does not match its digest");
    return bytes;
  }
  Result<oci::Digest> resolve(const Ref& r) {
    std::string link = root_ + (r.digest ? oci::registry_revision_link(r.repo, *r.digest) : oci::registry_tag_link(r.repo, r.tag));
    auto text = t_.read_small(link, 256);
    if (!text.ok()) {
      return Status(ENOENT, "no image " + r.repo + (r.digest ? "@" + r.digest->str() : ":" + r.tag) + " in the registry at " +
                                root_ + std::string(oci::kRegistryDir));
    }
    auto d = oci::parse_digest(*text);
    if (!d) return Status(EIO, "the link " + link + " holds no digest");
    return *d;
  }
  std::vector<std::string> tags_of(const std::string& r, const oci::Digest& d) {
    std::vector<std::string> tags;
    auto names = t_.list(root_ + oci::registry_tags_dir(r));
    for (const auto& tag : names.ok() ? *names : std::vector<std::string>{}) {
      auto text = oci::valid_tag(tag) ? t_.read_small(root_ + oci::registry_tag_link(r, tag), 256)
                                      : Result<std::string>(Status::InvalidArgument(tag));
      auto td = text.ok() ? oci::parse_digest(*text) : std::nullopt;
      if (td && *td == d) tags.push_back(tag);
    }
    return tags;
  }
  json layer(const oci::Descriptor& l) {
    json j = {{"MIMEType", l.media_type}, {"Digest", l.digest.str()}, {"Size", l.size}};
    auto st = t_.stat(blob(l.digest));
    if (!st.ok()) j["Missing"] = true;
    else if (st->dek_generation) j["DataKeyGeneration"] = *st->dek_generation;
    return j;
  }

 private:
  StoreTree& t_;
  std::string root_;  // the registry's root directory, with a trailing '/', or ""
};

std::string human_size(uint64_t n) {
  std::ostringstream s;
  s.precision(1);
  if (n >= 1000000) s << std::fixed << n / 1e6 << " MB";
  else if (n >= 1000) s << std::fixed << n / 1e3 << " kB";
  else s << n << " B";
  return s.str();
}

void print_human(const json& j, std::ostream& out) {
  // What an image says (labels, env, platform) is whoever pushed it's: shown escaped.
  auto line = [&](const char* k, const std::string& v) {
    if (!v.empty()) out << k << std::string(16 - std::string(k).size(), ' ') << printable(v) << "\n";
  };
  line("Name:", j.value("Name", ""));
  line("Digest:", j.value("Digest", ""));
  line("MediaType:", j.value("MediaType", ""));
  if (j.contains("RepoTags")) {
    std::string tags;
    for (const auto& t : j["RepoTags"]) tags += (tags.empty() ? "" : ", ") + t.get<std::string>();
    line("Tags:", tags);
  }
  line("Created:", j.value("Created", ""));
  std::string platform = j.value("Os", "") + (j.contains("Architecture") ? "/" + j.value("Architecture", "") : "") +
                         (j.contains("Variant") ? "/" + j.value("Variant", "") : "");
  line("Platform:", platform == "" ? "" : platform);
  const json labels = j.value("Labels", json::object()), env = j.value("Env", json::array());
  for (const auto& [k, v] : labels.items()) line("Label:", k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
  for (const auto& e : env) line("Env:", e.is_string() ? e.get<std::string>() : e.dump());
  if (j.contains("Manifests")) {
    out << "Manifests:\n";
    for (const auto& m : j["Manifests"]) {
      out << "  " << printable(m.value("Digest", "")) << "  " << printable(m.value("Platform", "")) << "  "
          << human_size(m.value("Size", 0)) << "\n";
    }
  }
  if (j.contains("LayersData")) {
    out << "Layers:\n";
    for (const auto& l : j["LayersData"]) {
      out << "  " << printable(l.value("Digest", "")) << "  " << human_size(l.value("Size", 0)) << "  "
          << printable(l.value("MIMEType", ""));
      if (l.contains("DataKeyGeneration")) out << "  (data key generation " << l["DataKeyGeneration"] << ")";
      if (l.value("Missing", false)) out << "  (missing)";
      out << "\n";
    }
  }
  line("Protected by:", j.value("ProtectedBy", ""));
}

}  // namespace

int run_inspect_image(const std::string& target, const std::string& mountpoint, const std::string& registry_root,
                      const std::string& ref_text, bool as_json, std::ostream& out, std::ostream& err) {
  auto ref = parse_ref(ref_text);
  if (!ref.ok()) return err << "cmkfs: " << ref.status().message() << "\n", kExitUsage;
  int code = kExitOk;
  auto tree = open_tree(target, mountpoint, "inspect", err, &code);
  if (!tree) return code;
  std::string root = registry_root;
  while (!root.empty() && root.front() == '/') root.erase(0, 1);
  while (!root.empty() && root.back() == '/') root.pop_back();
  Registry reg(*tree, root);
  auto fail = [&](const Status& s) {
    err << "cmkfs: " << s.message() << "\n";
    return s.code() == ENOENT ? kExitError : kExitNotAStore;
  };
  auto digest = reg.resolve(*ref);
  if (!digest.ok()) return fail(digest.status());
  auto bytes = reg.read(*digest, oci::kMaxManifestSize);
  if (!bytes.ok()) return fail(bytes.status());
  auto m = oci::parse_manifest(*bytes);
  if (!m.ok()) return fail(Status(EIO, "manifest " + digest->str() + ": " + m.status().message()));
  json j = {{"Name", ref->repo}, {"Digest", digest->str()}, {"MediaType", m->media_type},
            {"RepoTags", reg.tags_of(ref->repo, *digest)}};
  if (m->kind == oci::Manifest::Kind::kIndex) {
    j["Manifests"] = json::array();
    for (const auto& e : m->manifests) {
      j["Manifests"].push_back({{"Digest", e.digest.str()}, {"Platform", e.platform}, {"Size", e.size}, {"MediaType", e.media_type}});
    }
  } else {
    auto config = reg.read(m->config.digest, 16 << 20);
    if (!config.ok()) return fail(config.status());
    json c = parse_untrusted_json(*config);
    if (!c.is_object()) return fail(Status(EIO, "config " + m->config.digest.str() + " is not a JSON object"));
    auto str = [&](const json& o, const char* k) { return o.contains(k) && o[k].is_string() ? o[k].get<std::string>() : ""; };
    if (!str(c, "created").empty()) j["Created"] = str(c, "created");
    if (!str(c, "architecture").empty()) j["Architecture"] = str(c, "architecture");
    if (!str(c, "os").empty()) j["Os"] = str(c, "os");
    if (!str(c, "variant").empty()) j["Variant"] = str(c, "variant");
    json cfg = c.contains("config") && c["config"].is_object() ? c["config"] : json::object();
    j["Labels"] = cfg.contains("Labels") && cfg["Labels"].is_object() ? cfg["Labels"] : json::object();
    j["Env"] = cfg.contains("Env") && cfg["Env"].is_array() ? cfg["Env"] : json::array();
    j["Layers"] = json::array();
    j["LayersData"] = json::array();
    for (const auto& l : m->layers) {
      j["Layers"].push_back(l.digest.str());
      j["LayersData"].push_back(reg.layer(l));
    }
  }
  std::string kek = tree->protection();
  if (!kek.empty()) j["ProtectedBy"] = kek;
  if (as_json) out << j.dump(2, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace) << "\n";
  else print_human(j, out);
  return kExitOk;
}

}  // namespace cmkfs::fs
