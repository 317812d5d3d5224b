// Redaction of secrets for logs and messages.
#include "common/redact.hpp"

namespace mp {

std::string redact(std::string_view secret, std::size_t keep) {
  // Short values would be revealed whole by a prefix; show only their length.
  if (secret.size() <= keep * 2) return "…(" + std::to_string(secret.size()) + ")";
  return std::string(secret.substr(0, keep)) + "…(" + std::to_string(secret.size()) + ")";
}

}  // namespace mp
