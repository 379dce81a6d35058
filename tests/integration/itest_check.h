// Checks for the integration scenarios: a failed check prints where and exits 1.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "CHECK FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

// CHECK_THROWS(Type, expr, "substring"): expr throws Type whose message contains substring.
#define CHECK_THROWS(Type, expr, substr)                                                     \
  do {                                                                                       \
    bool thrown = false;                                                                     \
    try {                                                                                    \
      (void)(expr);                                                                          \
    } catch (const Type& e) {                                                                \
      thrown = true;                                                                         \
      if (std::string(e.what()).find(substr) == std::string::npos) {                         \
        std::fprintf(stderr, "%s:%d: message '%s' lacks '%s'\n", __FILE__, __LINE__,         \
                     e.what(), substr);                                                      \
        std::exit(1);                                                                        \
      }                                                                                      \
    }                                                                                        \
    if (!thrown) {                                                                           \
      std::fprintf(stderr, "%s:%d: %s did not throw %s\n", __FILE__, __LINE__, #expr, #Type); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)
