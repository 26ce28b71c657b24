#!/usr/bin/env bash
# The whole test suite, with its one outside dependency installed first: the C
# backend's bare-metal tests build the emitted C with the Arm cross compiler and
# newlib and run it under QEMU (mps2-an386), all from Debian's packages. Everything
# else `cargo test` needs is in the repo (fixtures are committed; no Python).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v arm-none-eabi-gcc >/dev/null || need+=(gcc-arm-none-eabi)
[ -e /usr/lib/arm-none-eabi/newlib/thumb/v7e-m/nofp/librdimon.a ] || need+=(libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null || need+=(qemu-system-arm)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing ${need[*]} (Debian packages for the Cortex-M4 tests)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

cargo test --workspace "$@"
