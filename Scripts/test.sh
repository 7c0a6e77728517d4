#!/usr/bin/env bash
# Builds everything with warnings as errors and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./Scripts/install-deps.sh
swift build --build-tests -Xswiftc -warnings-as-errors
swift test --skip-build "$@"
