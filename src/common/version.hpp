// The version and commit this binary was built from.
#pragma once

#include <string>

namespace mp {
const char* version() noexcept;
const char* git_commit() noexcept;
std::string version_line(const char* program);  // "mailpushd 0.1.0 (commit abc123)"
}  // namespace mp
