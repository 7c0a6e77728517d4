#!/usr/bin/env bash
# Builds and starts the demo: ./Scripts/demo.sh [--pprof-address HOST:PORT] [--http-address HOST:PORT|off] [--load-threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
./Scripts/install-deps.sh
swift build -c release --product pprof-demo
exec .build/release/pprof-demo "$@"
