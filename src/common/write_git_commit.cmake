# Writes OUTPUT, a C++ file defining mp::git_commit(), from `git rev-parse` in SOURCE_DIR. Run at
# every build; the file changes (and version users relink) only when the commit does.
find_package(Git QUIET)
set(commit "")
if(GIT_EXECUTABLE)
  execute_process(COMMAND "${GIT_EXECUTABLE}" rev-parse --short=12 HEAD
                  WORKING_DIRECTORY "${SOURCE_DIR}" OUTPUT_VARIABLE commit
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    set(commit "")
  endif()
endif()
if(NOT commit MATCHES "^[0-9a-f]+$")
  set(commit "unknown") # a source tarball without .git
endif()
set(body "// Generated at build time by src/common/write_git_commit.cmake: do not edit.\n#include \"common/version.hpp\"\nnamespace mp {\nconst char* git_commit() noexcept {\n  return \"${commit}\";\n}\n}  // namespace mp\n")
file(WRITE "${OUTPUT}.tmp" "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUTPUT}.tmp" "${OUTPUT}")
file(REMOVE "${OUTPUT}.tmp")
