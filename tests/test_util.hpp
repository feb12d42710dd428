#pragma once
// Helpers shared by the test programs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <initializer_list>
#include <string>

namespace asbi::test_util {

// Runs `f` expecting an exception of type E whose message contains every one of `parts`: errors
// must say what was expected and what was found, so tests check the words, not just the type.
template <typename E, typename F>
void expect_error_naming(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected an exception, none was thrown";
  } catch (const E& e) {
    const std::string what = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(what.find(p), std::string::npos) << "'" << p << "' missing from: " << what;
  }
}

// ASBI_FAST_TESTS=1 (the sanitizer preset): statistical fits of thousands of training steps are
// left to the Release suite; the code paths they train through stay covered by the fast tests.
inline bool fast_tests() {
  const char* v = std::getenv("ASBI_FAST_TESTS");
  return v && std::string(v) == "1";
}

}  // namespace asbi::test_util

#define ASBI_SKIP_STATISTICAL_FIT_IF_FAST()                                           \
  do {                                                                                \
    if (::asbi::test_util::fast_tests())                                              \
      GTEST_SKIP() << "ASBI_FAST_TESTS=1: statistical fit left to the Release suite"; \
  } while (0)
