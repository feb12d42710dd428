#!/usr/bin/env bash
# asbi's two set-up commands, for a fresh Debian 12 machine:
#   bash build.sh run    install what is missing, build, run the main job on its default
#   bash build.sh test   install what is missing, build, run every test, build examples/embed
#                        against the installed package
# Extra arguments after `run` go to `asbi run` (e.g. bash build.sh run my_config.toml).
set -euo pipefail
cd "$(dirname "$0")"

packages=(build-essential cmake ninja-build libeigen3-dev libgtest-dev libgmock-dev
          libbenchmark-dev libomp-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev
          gnuplot-nox)

install_dependencies() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "build.sh: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

build() {  # build <preset> [extra cmake arguments…]
  local preset=$1
  shift
  cmake --preset "$preset" -G Ninja "$@" > "build/configure-$preset.log" 2>&1 ||
    { cat "build/configure-$preset.log"; exit 1; }
  cmake --build --preset "$preset"
}

mode=${1:-}
shift || true
mkdir -p build
case "$mode" in
  run)
    install_dependencies
    build release -DASBI_BUILD_TESTS=OFF -DASBI_BUILD_BENCH=OFF
    # The sbibm reference posteriors beside the project, when present, for the C2ST of the run.
    if [ -z "${ASBI_REFERENCE_DIR:-}" ] && [ -d ../shared/reference ]; then
      export ASBI_REFERENCE_DIR="$PWD/../shared/reference"
    fi
    # Passive OpenMP waits: on a shared machine, spinning threads that wait for a descheduled
    # partner made training many times slower (docs/benchmarks.md, "Threads").
    export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
    exec ./build/release/sbi/cli/asbi run "$@"
    ;;
  test)
    install_dependencies
    build release -DASBI_WERROR=ON -DASBI_BUILD_BENCH=ON
    ctest --preset release -j 2 --timeout 600
    cmake --install build/release > /dev/null
    cmake -S examples/embed -B build/embed -G Ninja -DCMAKE_PREFIX_PATH="$PWD/build/release/install" \
      > build/configure-embed.log 2>&1 || { cat build/configure-embed.log; exit 1; }
    cmake --build build/embed
    ./build/embed/embed
    echo "build.sh: all tests passed; examples/embed builds against the installed package"
    ;;
  *)
    echo "usage: bash build.sh run [main-job options] | bash build.sh test" >&2
    exit 2
    ;;
esac
