// The store's shared SQL helpers: JSON text for audit details, the padded id-list shapes.
#include "store/sql_util.hpp"

#include <algorithm>

namespace mp::store::sql {

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void append_case_id(std::string& sql, std::size_t rows, std::string_view then,
                    std::string_view otherwise) {
  sql += "CASE id";
  for (std::size_t i = 0; i < rows; ++i) {
    sql += " WHEN ? THEN ";
    sql += then;
  }
  sql += " ELSE ";
  sql += otherwise;
  sql += " END";
}

std::size_t id_list_shape(std::size_t n) noexcept {
  for (std::size_t shape : kIdListShapes) {
    if (n <= shape) return shape;
  }
  return kMaxIdListShape;
}

std::string_view id_placeholders(std::size_t shape) {
  // One string of kMaxIdListShape placeholders; a shorter shape is a prefix of it.
  static const std::string all = [] {
    std::string s = "?";
    for (std::size_t i = 1; i < kMaxIdListShape; ++i) s += ",?";
    return s;
  }();
  const std::size_t n = std::min(std::max<std::size_t>(shape, 1), kMaxIdListShape);
  return std::string_view(all).substr(0, 2 * n - 1);
}

Result<std::uint64_t> execute_in_id_chunks(Connection& conn, std::string_view head,
                                           const std::vector<std::int64_t>& ids) {
  std::uint64_t changed = 0;
  auto st = for_each_id_chunk(
      ids, [&](std::string_view placeholders, std::span<const Value> chunk) -> Status {
        auto n = conn.execute(std::string(head) + std::string(placeholders) + ")", chunk);
        if (!n) return std::move(n).error();
        changed += *n;
        return {};
      });
  if (!st) return std::move(st).error();
  return changed;
}

}  // namespace mp::store::sql
