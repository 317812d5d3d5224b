// The fuzz targets' invariant check: says which invariant broke (the line and the condition),
// then stops the run as a crash, so libFuzzer saves the input.
#pragma once

#include <cstdio>

#define FUZZ_REQUIRE(condition)                                                        \
  do {                                                                                 \
    if (!(condition)) {                                                                \
      std::fprintf(stderr, "invariant failed at line %d: %s\n", __LINE__, #condition); \
      __builtin_trap();                                                                \
    }                                                                                  \
  } while (false)
