#include "keyclient/pkcs11_uri.h"

#include <cctype>

#include "keyclient/http.h"

namespace cmkfs::keyclient {
namespace {

constexpr size_t kMaxUri = 4096;

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    };
    int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// RFC 7512 leaves unreserved characters, '/' and ':' unescaped in values.
std::string encode_value(std::string_view s, bool every_byte = false) { return percent_encode(s, "/:", every_byte); }

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  while (!s.empty()) {
    size_t at = s.find(sep);
    parts.push_back(s.substr(0, at));
    if (at == std::string_view::npos) break;
    s.remove_prefix(at + 1);
  }
  return parts;
}

}  // namespace

Result<Pkcs11Uri> Pkcs11Uri::parse(std::string_view uri) {
  if (!looks_like(uri)) return Status::InvalidArgument("a PKCS#11 key is named by a pkcs11: URI");
  if (uri.size() > kMaxUri) return Status::InvalidArgument("the pkcs11: URI is too long");
  uri.remove_prefix(7);
  size_t q = uri.find('?');
  std::string_view path = uri.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : uri.substr(q + 1);
  Pkcs11Uri u;
  auto attribute = [](std::string_view a, std::string& name, std::string& value) -> Status {
    size_t eq = a.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return Status::InvalidArgument("'" + std::string(a) + "' in the pkcs11: URI is not NAME=VALUE");
    }
    name = std::string(a.substr(0, eq));
    auto v = percent_decode(a.substr(eq + 1));
    if (!v) return Status::InvalidArgument("bad percent-encoding in the pkcs11: URI attribute " + name);
    value = std::move(*v);
    return Status::Ok();
  };
  std::vector<std::string> seen;
  auto once = [&](const std::string& name) -> Status {
    for (const auto& s : seen) {
      if (s == name) return Status::InvalidArgument("the pkcs11: URI names " + name + " twice");
    }
    seen.push_back(name);
    return Status::Ok();
  };
  for (std::string_view a : split(path, ';')) {
    std::string name, value;
    CMKFS_RETURN_IF_ERROR(attribute(a, name, value));
    CMKFS_RETURN_IF_ERROR(once(name));
    if (name == "token") u.token = value;
    else if (name == "manufacturer") u.manufacturer = value;
    else if (name == "serial") u.serial = value;
    else if (name == "model") u.model = value;
    else if (name == "object") u.object = value;
    else if (name == "id") u.id = std::vector<uint8_t>(value.begin(), value.end());
    else if (name == "type") {
      if (value != "secret" && value != "private") {
        return Status::InvalidArgument("type=" + value + ": the key that unwraps is a secret or a private key");
      }
      u.type = value;
    } else {
      return Status::InvalidArgument("cmkfs does not use the pkcs11: URI attribute '" + name +
                                     "' (it knows token, manufacturer, serial, model, object, id, type)");
    }
  }
  for (std::string_view a : split(query, '&')) {
    std::string name, value;
    CMKFS_RETURN_IF_ERROR(attribute(a, name, value));
    CMKFS_RETURN_IF_ERROR(once(name));
    if (name == "module-path") {
      u.module_path = value;
    } else if (name == "pin-source") {
      u.pin_source = value.rfind("file:", 0) == 0 ? value.substr(5) : value;
    } else if (name == "pin-value") {
      return Status::InvalidArgument("a PIN in the key identifier would be stored and shown with it; "
                                     "give it in a file: pin-source=file:/etc/cmkfs/hsm.pin");
    } else {
      return Status::InvalidArgument("cmkfs does not use the pkcs11: URI query attribute '" + name +
                                     "' (it knows module-path and pin-source)");
    }
  }
  if (u.object.empty()) return Status::InvalidArgument("the pkcs11: URI must name the key: object=LABEL");
  if (u.id && u.id->empty()) return Status::InvalidArgument("the pkcs11: URI's id is empty");
  if (u.module_path.empty() || u.module_path[0] != '/') {
    return Status::InvalidArgument("the pkcs11: URI must name the module by its absolute path: "
                                   "?module-path=/usr/lib/softhsm/libsofthsm2.so");
  }
  if (u.pin_source.empty() || u.pin_source[0] != '/') {
    return Status::InvalidArgument("the pkcs11: URI must name the PIN file by its absolute path: "
                                   "&pin-source=file:/etc/cmkfs/hsm.pin");
  }
  return u;
}

std::string Pkcs11Uri::str() const {
  std::string out = "pkcs11:";
  bool first = true;
  auto add = [&](const char* name, const std::string& value, bool all = false) {
    if (value.empty()) return;
    if (!first) out += ';';
    first = false;
    out += std::string(name) + "=" + encode_value(value, all);
  };
  add("token", token);
  add("manufacturer", manufacturer);
  add("serial", serial);
  add("model", model);
  add("object", object);
  add("type", type);
  if (id) add("id", std::string(id->begin(), id->end()), /*all=*/true);
  out += "?module-path=" + encode_value(module_path) + "&pin-source=file:" + encode_value(pin_source);
  return out;
}

Pkcs11Uri Pkcs11Uri::with_id(std::vector<uint8_t> new_id) const {
  Pkcs11Uri u = *this;
  u.id = std::move(new_id);
  return u;
}

bool Pkcs11Uri::same_key(const Pkcs11Uri& o) const {
  return token == o.token && manufacturer == o.manufacturer && serial == o.serial && model == o.model &&
         object == o.object && type == o.type && module_path == o.module_path;
}

}  // namespace cmkfs::keyclient
