// Build identity, injected by CMake.
#include "common/version.hpp"

namespace mp {
const char* version() noexcept {
  return MAILPUSH_VERSION;
}
const char* git_commit() noexcept {
  return MAILPUSH_GIT_COMMIT;
}
std::string version_line(const char* program) {
  return std::string(program) + " " + version() + " (commit " + git_commit() + ")";
}
}  // namespace mp
