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

}  // namespace mp::store::sql
