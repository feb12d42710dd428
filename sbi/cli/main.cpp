// The asbi command (being written in a parallel branch).
#include <cstdio>

int main() {
  std::fputs("asbi: the command is being built\n", stderr);
  return 1;
}
