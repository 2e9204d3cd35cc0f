#!/usr/bin/env bash
# Rebuilds the committed converter, reproducibly, and compiles it ahead of
# time for each supported target (the host loads that and has no compiler):
#   converter-guest/build-wasm.sh            # writes converter-guest/dist/decant_guest.wasm
#                                            # and decant_guest.<target>.cwasm
#   converter-guest/build-wasm.sh --check    # fails if a committed file differs
#
# The bytes must not depend on who builds or where: the toolchain is pinned
# (rust-toolchain.toml at the repo root), dependencies are pinned by
# Cargo.lock, paths are remapped, and the `guest` profile strips debug info.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
rustup target add --toolchain "$toolchain" wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="--remap-path-prefix=$root=/decant --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$rustup_home=/rustup --cfg getrandom_backend=\"unsupported\""
export SOURCE_DATE_EPOCH=0
cargo +"$toolchain" build --locked -p converter-guest --target wasm32-unknown-unknown --profile guest
built=target/wasm32-unknown-unknown/guest/converter_guest.wasm
dist=converter-guest/dist/decant_guest.wasm
if [ "${1:-}" = "--check" ]; then
  if ! cmp -s "$built" "$dist"; then
    echo "converter-guest/dist/decant_guest.wasm is stale or not reproducible:" >&2
    echo "  committed $(sha256sum < "$dist" | cut -c1-64)" >&2
    echo "  rebuilt   $(sha256sum < "$built" | cut -c1-64)" >&2
    echo "run converter-guest/build-wasm.sh and commit the result" >&2
    exit 1
  fi
  echo "converter guest reproduces: $(sha256sum < "$dist" | cut -c1-64)"
else
  cp "$built" "$dist"
  echo "wrote $dist: $(sha256sum < "$dist" | cut -c1-64)"
fi
# The compiled converter, from the committed wasm (checked above), with the
# pinned wasmtime and the sandbox's own engine configuration.
if [ "${1:-}" = "--check" ]; then
  cargo +"$toolchain" run --quiet --locked --features precompile-all --bin decant-precompile -- --check
else
  cargo +"$toolchain" run --quiet --locked --features precompile-all --bin decant-precompile
fi
