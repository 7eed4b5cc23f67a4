#include "fs/store/s3_signer.h"

#include <algorithm>
#include <cctype>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"

namespace cmkfs::fs {
namespace {

crypto::Bytes bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

crypto::Mac256 hmac(crypto::Bytes key, std::string_view data) { return crypto::hmac_sha256(key, bytes_of(data)); }

// A view, not a copy: a line may hold the secret key.
std::string_view trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
  return b == std::string_view::npos ? std::string_view() : s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

S3KeysOrError parse_s3_keys(std::string_view text) {
  S3KeysOrError r;
  std::string section;  // lines before any [section] count as [default]'s
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      section = trim(line.substr(1, line.find(']') - 1));
      continue;
    }
    if (!section.empty() && section != "default") continue;  // another profile's keys
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    std::string name = lower(std::string(trim(line.substr(0, eq))));
    std::string_view value = trim(line.substr(eq + 1));
    if (name == "access_key" || name == "aws_access_key_id") r.keys.access_key = value;
    if (name == "secret_key" || name == "aws_secret_access_key") {
      r.keys.secret = crypto::SecretBytes::copy_of(crypto::as_bytes(value));
    }
  }
  if (r.keys.access_key.empty()) r.error = "no access_key (or aws_access_key_id) line";
  else if (r.keys.secret.empty()) r.error = "no secret_key (or aws_secret_access_key) line";
  return r;
}

std::string s3_payload_sha256(std::string_view body) { return to_hex(crypto::sha256(bytes_of(body))); }

std::vector<std::pair<std::string, std::string>> s3_sign(const S3SignedRequest& r, const S3Keys& keys,
                                                         const std::string& region, std::time_t now) {
  char stamp[17];
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  std::string amz_date = stamp, date = amz_date.substr(0, 8);

  std::vector<std::pair<std::string, std::string>> headers;
  headers.emplace_back("host", r.host);
  for (const auto& [k, v] : r.headers) headers.emplace_back(lower(k), std::string(trim(v)));
  headers.emplace_back("x-amz-content-sha256", r.payload_sha256);
  headers.emplace_back("x-amz-date", amz_date);
  std::sort(headers.begin(), headers.end());
  std::string canonical_headers, signed_headers;
  for (const auto& [k, v] : headers) {
    canonical_headers += k + ":" + v + "\n";
    signed_headers += (signed_headers.empty() ? "" : ";") + k;
  }
  std::vector<std::pair<std::string, std::string>> query;
  for (const auto& [k, v] : r.query) query.emplace_back(s3_uri_encode(k, false), s3_uri_encode(v, false));
  std::sort(query.begin(), query.end());
  std::string canonical_query;
  for (const auto& [k, v] : query) canonical_query += (canonical_query.empty() ? "" : "&") + k + "=" + v;

  std::string canonical = r.method + "\n" + r.path + "\n" + canonical_query + "\n" + canonical_headers + "\n" +
                          signed_headers + "\n" + r.payload_sha256;
  std::string scope = date + "/" + region + "/s3/aws4_request";
  std::string to_sign = "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" + s3_payload_sha256(canonical);

  crypto::SecretBytes secret(4 + keys.secret.size());
  std::copy_n("AWS4", 4, secret.data());
  std::copy_n(keys.secret.data(), keys.secret.size(), secret.data() + 4);
  crypto::Mac256 k = hmac({secret.data(), secret.size()}, date);
  for (std::string_view part : {std::string_view(region), std::string_view("s3"), std::string_view("aws4_request")}) {
    crypto::Mac256 next = hmac(k, part);
    crypto::wipe_memory(k.data(), k.size());  // each step's key derives the next: all are secret
    k = next;
    crypto::wipe_memory(next.data(), next.size());
  }
  std::string signature = to_hex(hmac(k, to_sign));
  crypto::wipe_memory(k.data(), k.size());

  return {{"x-amz-date", amz_date},
          {"x-amz-content-sha256", r.payload_sha256},
          {"Authorization", "AWS4-HMAC-SHA256 Credential=" + keys.access_key + "/" + scope +
                                ",SignedHeaders=" + signed_headers + ",Signature=" + signature}};
}

}  // namespace cmkfs::fs
