// Integers read from JSON that may be hostile (the backing store, the host, a request). nlohmann's
// get<T>() and value() cast any number to T without a check, and casting a float out of T's
// range is undefined behaviour (the fuzzer found a chunk size of 10^31).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <utility>

namespace cmkfs {

// `v` as a T if it is an integer within T's range; else json::type_error, as a wrong type
// throws, for the callers' handlers of malformed documents.
template <class T>
T json_integer(const nlohmann::json& v) {
  if (v.is_number_unsigned()) {
    if (std::in_range<T>(v.get<uint64_t>())) return static_cast<T>(v.get<uint64_t>());
  } else if (v.is_number_integer() && std::in_range<T>(v.get<int64_t>())) {
    return static_cast<T>(v.get<int64_t>());
  }
  throw nlohmann::json::type_error::create(302, "expected an integer within range", &v);
}

// j[key] as json_integer<T> when present, `absent` when not.
template <class T>
T json_integer_or(const nlohmann::json& j, const char* key, T absent) {
  auto it = j.find(key);
  return it == j.end() ? absent : json_integer<T>(*it);
}

}  // namespace cmkfs
