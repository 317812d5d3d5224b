// Small helpers the store's SQL files share: binary parameters, transactions, JSON text for
// audit details.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "store/mariadb.hpp"

namespace mp::store::sql {

// A byte string bound as a BLOB (no character-set conversion).
inline Value blob(const Bytes& b) {
  return Value{Blob{std::string(b.begin(), b.end())}};
}

// Registrations (alias `r`) whose subscription went silent: nothing heard for twice the
// StatusFrequency (since creation if never). silent_after is that moment, an indexed virtual
// column (migration 0006), so this reads only silent rows.
inline constexpr std::string_view kSilentCondition =
    "r.state = 'active' AND r.silent_after < UTC_TIMESTAMP(6)";

// Runs `body` in a transaction: committed when it succeeds, rolled back when it fails.
template <class T, class Body>
Result<T> in_transaction(Connection& conn, Body&& body) {
  if (auto st = conn.begin(); !st) return std::move(st).error();
  Result<T> result = body();
  if (result) {
    if (auto st = conn.commit(); !st) result = std::move(st).error();
  }
  if (!result && !conn.broken()) (void)conn.rollback();
  return result;
}

// A JSON string literal of `s` for audit details; control characters become spaces.
std::string json_string(std::string_view s);

}  // namespace mp::store::sql
