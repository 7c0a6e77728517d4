#!/usr/bin/env bash
# Builds and starts the demo server: ./Scripts/demo.sh [--pprof-address HOST:PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
./Scripts/install-deps.sh
swift build -c release --product pprof-demo
exec .build/release/pprof-demo "$@"
