// Build identity: the version from CMake; git_commit() is generated at build time (git_commit.cpp).
#include "common/version.hpp"

namespace mp {
const char* version() noexcept {
  return MAILPUSH_VERSION;
}
std::string version_line(const char* program) {
  return std::string(program) + " " + version() + " (commit " + git_commit() + ")";
}
}  // namespace mp
