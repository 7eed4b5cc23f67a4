#include "fs/store/meta_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"
#include "fs/store/private_fs.h"
#include "meta/meta.h"

namespace cmkfs::fs {

using nlohmann::json;

std::string MetaConfig::describe() const { return lmdb() ? "lmdb" : engine + " (schema " + schema + ")"; }

std::string MetaConfig::default_schema(const Id128& store_id) { return "cmkfs_" + to_hex(store_id); }

std::string MetaConfig::host_json() const {
  return json{{"engine", engine}, {"schema", schema}, {"conninfo_file", conninfo_file}}.dump();
}

Result<MetaConfig> MetaConfig::from_json(std::string_view text) {
  try {
    json j = json::parse(text);
    MetaConfig c;
    c.engine = j.at("engine").get<std::string>();
    c.schema = j.value("schema", "");
    c.conninfo_file = j.value("conninfo_file", "");
    if (c.engine != "lmdb" && c.engine != "postgres") return Status::Corruption("unknown metadata engine " + c.engine);
    return c;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("malformed metadata settings: ") + e.what());
  }
}

Result<std::string> read_conninfo(const std::string& path) {
  auto text = read_secret_file(path);
  if (!text.ok()) return text.status();
  // The first line, cut in place: the string may hold a password, and no copy of it is left.
  std::string s = std::move(*text);
  if (size_t nl = s.find('\n'); nl != std::string::npos) {
    crypto::wipe_memory(s.data() + nl, s.size() - nl);
    s.resize(nl);
  }
  if (s.empty()) return Status::InvalidArgument(path + " holds no connection string");
  if (Status parsed = meta::check_conninfo(s); !parsed.ok()) {
    crypto::wipe_memory(s.data(), s.size());
    return Status(parsed.code(), path + ": " + parsed.message());
  }
  return s;
}

std::string engine_marker_json(const MetaConfig& meta, const Id128& store_id) {
  return json{{"engine", meta.engine}, {"store_id", to_hex(store_id)}}.dump() + "\n";
}

Result<Id128> parse_engine_marker(std::string_view text) {
  try {
    json j = json::parse(text);
    auto id = from_hex(j.at("store_id").get<std::string>());
    Id128 out{};
    if (!id || id->size() != out.size()) return Status::Corruption("meta/engine.json: bad store id");
    std::copy(id->begin(), id->end(), out.begin());
    return out;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("meta/engine.json is damaged: ") + e.what());
  }
}

}  // namespace cmkfs::fs
