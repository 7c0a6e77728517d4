#!/usr/bin/env bash
# Builds and tests the example apps (Examples/vapor-app, Examples/hummingbird-app),
# each a package of its own that depends on this one by path. Each builds in
# its own .build/ (gitignored). Fails on any warning in this repository's code
# (the frameworks' own warnings are theirs). Usage: Scripts/build-examples.sh [NAME...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
./Scripts/install-deps.sh

examples=("$@")
[ ${#examples[@]} -eq 0 ] && examples=(vapor-app hummingbird-app)

for example in "${examples[@]}"; do
    dir="$root/Examples/$example"
    echo "== $example: build" >&2
    start=$SECONDS
    mkdir -p "$dir/.build"
    log="$dir/.build/build-examples.log"
    if ! (cd "$dir" && swift build --build-tests --scratch-path .build 2>&1 | tee "$log" | grep -E "error:|warning:|Build complete|Compiling (VaporApp|HummingbirdApp|Pprof) " | grep -v "unhandled; explicitly declare" >&2; exit "${PIPESTATUS[0]}"); then
        echo "== $example: build failed (log: $log)" >&2
        exit 1
    fi
    # Warnings in our code: the example's own sources and tests, and the library.
    if grep -E "^$root/(Examples/$example/(Sources|Tests)|Sources)/[^ ]*: warning:" "$log" >&2; then
        echo "== $example: warnings in this repository's code" >&2
        exit 1
    fi
    echo "== $example: built in $((SECONDS - start)) s" >&2
    start=$SECONDS
    (cd "$dir" && swift test --skip-build --scratch-path .build)
    echo "== $example: tested in $((SECONDS - start)) s" >&2
done
