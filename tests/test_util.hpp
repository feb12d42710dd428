#pragma once
// Helpers shared by the test programs.
#include <gtest/gtest.h>

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

}  // namespace asbi::test_util
