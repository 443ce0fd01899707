#!/usr/bin/env bash
# Type-checks and lints the whole workspace for the Mac (aarch64-apple-darwin), so the
# macOS code paths (Keychain, launchd, paths, the scheduler's alarm without timerfd) are
# compiled on every CI run. There is no Apple SDK here, so nothing is linked or run: the C
# code of aws-lc-sys and libsqlite3-sys goes through .ci/empty-cc, which writes empty
# objects, and binutils `ar` archives them. A missing target fails loudly, never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

target="aarch64-apple-darwin"

fail() {
    echo "" >&2
    echo "!! ======================================================================" >&2
    echo "!! MAC CHECK FAILED: $*" >&2
    echo "!! ======================================================================" >&2
    exit 1
}

command -v rustup >/dev/null ||
    fail "rustup is not installed, so the $target target cannot be added; the macOS build is NOT checked"
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" ||
        fail "\`rustup target add $target\` failed; the macOS build is NOT checked"
fi
command -v ar >/dev/null || fail "\`ar\` (binutils) is not installed; the macOS build is NOT checked"

empty_cc="$PWD/.ci/empty-cc"
CC_aarch64_apple_darwin="$empty_cc" CXX_aarch64_apple_darwin="$empty_cc" \
    AR_aarch64_apple_darwin=ar \
    cargo clippy --target "$target" --workspace --all-targets -- -D warnings ||
    fail "\`cargo clippy --target $target\` found errors or warnings in the macOS build (above)"
