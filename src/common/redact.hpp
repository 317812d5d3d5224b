// What of a secret may appear in a log line or an error message: a short prefix and the length.
#pragma once

#include <string>
#include <string_view>

namespace mp {

// "a1b2c3d4…(64)": enough for an operator to match a device, never enough to use it.
std::string redact(std::string_view secret, std::size_t keep = 8);

}  // namespace mp
