// AWS Signature Version 4 for S3 requests, as RGW and every S3 service check it. Pure functions
// of the request, the keys and the time, so they are tested against AWS's published examples.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crypto/crypto.h"
#include "keyclient/http.h"

namespace cmkfs::fs {

struct S3Keys {
  std::string access_key;      // sent with every request: not a secret
  crypto::SecretBytes secret;  // the secret key, zeroised when freed
  static S3Keys of(std::string access_key, std::string_view secret_key) {
    return {std::move(access_key), crypto::SecretBytes::copy_of(crypto::as_bytes(secret_key))};
  }
};

// Parses an S3 credentials file: `name = value` lines and `#` comments; of an AWS credentials
// file's profiles, only [default]'s keys (and lines before any section) are read. The access key
// is `access_key` or `aws_access_key_id`, the secret `secret_key` or `aws_secret_access_key` (an
// AWS credentials file's [default] names work). `error` names what is missing, never a value;
// no copy of the secret is left behind but the one in `keys`.
struct S3KeysOrError {
  S3Keys keys;
  std::string error;  // empty when parsed
};
S3KeysOrError parse_s3_keys(std::string_view text);

struct S3SignedRequest {
  std::string method;
  std::string host;   // the Host header: host[:port]
  std::string path;   // already percent-encoded, starting with '/'
  std::vector<std::pair<std::string, std::string>> query;    // not encoded
  std::vector<std::pair<std::string, std::string>> headers;  // signed as well as sent (e.g. Range)
  std::string payload_sha256;                                 // lowercase hex
};

// The headers that authenticate `r` at `now` (x-amz-date, x-amz-content-sha256, Authorization),
// to send with r.headers.
std::vector<std::pair<std::string, std::string>> s3_sign(const S3SignedRequest& r, const S3Keys& keys,
                                                         const std::string& region, std::time_t now);

// RFC 3986 encoding as SigV4 wants it: everything but unreserved characters (and '/' when
// `keep_slash`) as %XX.
inline std::string s3_uri_encode(std::string_view s, bool keep_slash) {
  return keyclient::percent_encode(s, keep_slash ? "/" : "");
}

// The lowercase hex SHA-256 of a request's body, as x-amz-content-sha256 carries it.
std::string s3_payload_sha256(std::string_view body);

}  // namespace cmkfs::fs
