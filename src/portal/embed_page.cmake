# The portal page (src/portal/page/) embedded into mp_portal. Included from CMakeLists.txt, it adds
# the build step and the sources; run with -P by that step, it writes OUTPUT, a C++ file holding
# every page file as a string, so an edit of the page rebuilds mailpushd.
if(NOT CMAKE_SCRIPT_MODE_FILE)
  file(GLOB MP_PAGE_FILES CONFIGURE_DEPENDS "${CMAKE_CURRENT_LIST_DIR}/page/*")
  set(MP_PAGE_EMBEDDED "${CMAKE_CURRENT_BINARY_DIR}/page_embedded.cpp")
  add_custom_command(
    OUTPUT "${MP_PAGE_EMBEDDED}"
    COMMAND ${CMAKE_COMMAND} -DPAGE_DIR=${CMAKE_CURRENT_LIST_DIR}/page -DOUTPUT=${MP_PAGE_EMBEDDED}
            -P ${CMAKE_CURRENT_LIST_FILE}
    DEPENDS ${MP_PAGE_FILES} ${CMAKE_CURRENT_LIST_FILE}
    COMMENT "Embedding the portal page")
  target_sources(mp_portal PRIVATE "${CMAKE_CURRENT_LIST_DIR}/portal_page.cpp" "${MP_PAGE_EMBEDDED}")
  # Generated data: its own translation unit (it declares what portal_page.cpp declares extern).
  set_source_files_properties("${MP_PAGE_EMBEDDED}" PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
  return()
endif()

file(GLOB page_files "${PAGE_DIR}/*.html" "${PAGE_DIR}/*.css" "${PAGE_DIR}/*.js")
list(SORT page_files)
set(body "// Generated from src/portal/page/ by embed_page.cmake: do not edit.\n#include <cstddef>\nnamespace mp::portal {\nstruct EmbeddedPageFile { const char* name; const char* text; };\nextern const EmbeddedPageFile kEmbeddedPageFiles[] = {\n")
set(count 0)
foreach(f IN LISTS page_files)
  get_filename_component(name "${f}" NAME)
  file(READ "${f}" text)
  string(FIND "${text}" ")mp_page\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${f} holds the raw-string delimiter )mp_page\"")
  endif()
  string(APPEND body "  {\"${name}\", R\"mp_page(${text})mp_page\"},\n")
  math(EXPR count "${count} + 1")
endforeach()
string(APPEND body "};\nextern const std::size_t kEmbeddedPageFileCount = ${count};\n}  // namespace mp::portal\n")
file(WRITE "${OUTPUT}.tmp" "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUTPUT}.tmp" "${OUTPUT}")
