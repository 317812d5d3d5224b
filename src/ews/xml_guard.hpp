// Cheap checks that refuse hostile XML before a parser spends anything on it (private to mp_ews).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include "ews/send_notification.hpp"

namespace mp::ews::detail {

// tinyxml2 looks for a duplicate by scanning the element's earlier attributes, so n attributes on
// one element cost n²/2 compares (100k attributes in 1 MiB: 72 s). EWS elements carry at most a
// handful; more than this is refused as too_many_elements.
inline constexpr std::size_t kMaxAttributesPerElement = 64;

// Runs every check that comes before the XML parser, in the documented order: size, DOCTYPE /
// ENTITY, UTF-8, XML declaration, then a structural pre-scan that measures depth, element count
// and attributes per element, and notes the well-formedness faults tinyxml2 would let through
// (bare '&', undeclared entities, '<' in attribute values, control characters, a misplaced XML
// declaration). Returns the first refusal, or nothing when the body may go to tinyxml2.
std::optional<ParseError> check_untrusted_xml(std::string_view body, const ParseLimits& limits);

}  // namespace mp::ews::detail
