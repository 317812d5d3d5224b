# Precompiled headers (GCC builds): the Asio, Beast, JSON and standard headers most sources
# include are compiled once per build into one header (target mp_pch, and mp_test_pch with
# GoogleTest for the tests), which every C++ target that links Asio reuses (REUSE_FROM).
# Parsing them took about 5 s of every translation unit. The clang presets (asan, fuzz) go
# without: clang refuses a precompiled header built with other -D options than the target's,
# where GCC falls back to reading the header text, so a mismatch there costs time, never a
# wrong build. Included last from the top-level CMakeLists.txt, once every target exists.
option(MAILPUSH_PCH "Precompiled headers for the targets that use Asio (GCC)" ON)
if(NOT MAILPUSH_PCH OR NOT CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  return()
endif()

set(mp_pch_headers
    <algorithm> <chrono> <cstdint> <filesystem> <functional> <map> <memory> <mutex> <optional>
    <string> <string_view> <thread> <variant> <vector>
    <boost/asio/as_tuple.hpp> <boost/asio/awaitable.hpp> <boost/asio/co_spawn.hpp>
    <boost/asio/detached.hpp> <boost/asio/io_context.hpp> <boost/asio/ip/tcp.hpp>
    <boost/asio/ssl.hpp> <boost/asio/steady_timer.hpp> <boost/asio/use_awaitable.hpp>
    <boost/beast/core.hpp> <boost/beast/http.hpp> <nlohmann/json.hpp>)

file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/mp_pch.cpp" "// The precompiled header's own translation unit.\n")
add_library(mp_pch STATIC "${CMAKE_CURRENT_BINARY_DIR}/mp_pch.cpp")
target_link_libraries(mp_pch PRIVATE mp_asio nlohmann_json::nlohmann_json)
target_precompile_headers(mp_pch PRIVATE ${mp_pch_headers})
set_target_properties(mp_pch PROPERTIES UNITY_BUILD OFF)
set(mp_pch_targets mp_pch)
if(TARGET GTest::gtest)
  add_library(mp_test_pch STATIC "${CMAKE_CURRENT_BINARY_DIR}/mp_pch.cpp")
  target_link_libraries(mp_test_pch PRIVATE mp_asio nlohmann_json::nlohmann_json GTest::gtest
                                            GTest::gmock)
  target_precompile_headers(mp_test_pch PRIVATE ${mp_pch_headers} <gtest/gtest.h>
                            <gmock/gmock.h>)
  set_target_properties(mp_test_pch PROPERTIES UNITY_BUILD OFF)
  list(APPEND mp_pch_targets mp_test_pch)
endif()

# mp_links(TARGET LIB OUT): whether TARGET links LIB, directly or through its libraries.
function(mp_links target lib out)
  set(seen "")
  set(queue ${target})
  set(found FALSE)
  while(queue)
    list(POP_FRONT queue t)
    if(t IN_LIST seen OR NOT TARGET ${t})
      continue()
    endif()
    list(APPEND seen ${t})
    if(t STREQUAL lib)
      set(found TRUE)
      break()
    endif()
    get_target_property(imported ${t} IMPORTED)
    if(imported)
      continue()
    endif()
    get_target_property(type ${t} TYPE)
    if(NOT type STREQUAL "INTERFACE_LIBRARY")
      get_target_property(libs ${t} LINK_LIBRARIES)
      if(libs)
        list(APPEND queue ${libs})
      endif()
    endif()
    get_target_property(ilibs ${t} INTERFACE_LINK_LIBRARIES)
    if(ilibs)
      list(APPEND queue ${ilibs})
    endif()
  endwhile()
  set(${out} ${found} PARENT_SCOPE)
endfunction()

function(mp_targets_in dir out)
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    mp_targets_in("${sub}" more)
    list(APPEND targets ${more})
  endforeach()
  set(${out} ${targets} PARENT_SCOPE)
endfunction()

mp_targets_in("${PROJECT_SOURCE_DIR}" all_targets)
foreach(t IN LISTS all_targets)
  get_target_property(type ${t} TYPE)
  if(NOT type MATCHES "^(STATIC_LIBRARY|EXECUTABLE)$" OR t IN_LIST mp_pch_targets
     OR t STREQUAL "mp_asio")
    continue()
  endif()
  mp_links(${t} mp_asio uses_asio)
  if(NOT uses_asio)
    continue()
  endif()
  mp_links(${t} GTest::gtest uses_gtest)
  if(uses_gtest AND TARGET mp_test_pch)
    target_precompile_headers(${t} REUSE_FROM mp_test_pch)
  else()
    target_precompile_headers(${t} REUSE_FROM mp_pch)
  endif()
endforeach()
