// Small helpers the store's SQL files share: binary parameters, transactions, JSON text for
// audit details.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// Runs `body` in a transaction, rolled back when it fails; a deadlock (or a Galera certification
// conflict, also Errc::busy) or a duplicate key (a concurrent request inserted the same row
// first) re-runs it, twice at most: the next run finds the row.
template <class T, class Body>
Result<T> in_transaction_retried(Connection& conn, Body&& body) {
  for (int attempt = 0;; ++attempt) {
    if (auto st = conn.begin(); !st) return std::move(st).error();
    Result<T> result = body();
    if (result) {
      if (auto st = conn.commit(); !st) result = std::move(st).error();
    }
    if (result) return result;
    if (!conn.broken()) (void)conn.rollback();
    const Errc code = result.error().code;
    if ((code != Errc::busy && code != Errc::conflict) || attempt == 2 || conn.broken()) {
      return result;
    }
  }
}

// A JSON string literal of `s` for audit details; control characters become spaces.
std::string json_string(std::string_view s);

// Variable-length id lists as prepared statements of a few fixed shapes: a list is cut into
// chunks, each padded to the next shape by repeating its last id (harmless in `IN (…)`), so a
// connection prepares at most one statement per shape instead of one per list length.
inline constexpr std::size_t kIdListShapes[] = {1, 4, 16, 64, 256, 1024};
inline constexpr std::size_t kMaxIdListShape = 1024;
// The shape for a list of n ids (1 ≤ n ≤ kMaxIdListShape): the smallest that holds it.
std::size_t id_list_shape(std::size_t n) noexcept;
// "?,?,…,?" with `shape` placeholders (one of kIdListShapes); built once per process.
std::string_view id_placeholders(std::size_t shape);

// Appends "CASE id WHEN ? THEN <then> …(rows times)… ELSE <otherwise> END": per-row values of a
// statement over an id list, bound as (id, value) pairs in the order of the WHENs.
void append_case_id(std::string& sql, std::size_t rows, std::string_view then,
                    std::string_view otherwise);

// Calls run(placeholders, ids) for each chunk of `ids` (at most kMaxIdListShape each), `ids`
// padded to the shape; stops at the first error. The keys may be any bound value (ids, hashes).
template <class Key = std::int64_t, class Run>
Status for_each_id_chunk(const std::vector<Key>& ids, Run&& run) {
  std::vector<Value> values;
  for (std::size_t begin = 0; begin < ids.size(); begin += kMaxIdListShape) {
    const std::size_t n = std::min(ids.size() - begin, kMaxIdListShape);
    const std::size_t shape = id_list_shape(n);
    values.clear();
    for (std::size_t i = 0; i < shape; ++i) values.emplace_back(ids[begin + std::min(i, n - 1)]);
    if (Status st = run(id_placeholders(shape), std::span<const Value>(values)); !st) return st;
  }
  return {};
}

// Runs `head` + "?,…,?)" over each chunk of `ids` (a statement that ends "… id IN ("): the rows
// it changed in all, or the first error.
Result<std::uint64_t> execute_in_id_chunks(Connection& conn, std::string_view head,
                                           const std::vector<std::int64_t>& ids);

}  // namespace mp::store::sql
