#!/usr/bin/env bash
# Measures what the CPU profiler costs and prints a Markdown table
# (Docs/Benchmarks.md explains every figure): ./Scripts/benchmark.sh [--quick]
# Installs what it needs (Debian packages), builds release, then runs the
# three benchmarks of pprof-benchmarks; about 5 minutes on 2 cores.
# --quick: a short smoke run (few pairs), for checking the script only.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

./Scripts/install-deps.sh
# gperftools' CPU profiler (libprofiler.so), the baseline we compare with.
if ! dpkg-query -W -f='${Status}' libgoogle-perftools-dev 2>/dev/null | grep -q "install ok installed"; then
    echo "benchmark: installing libgoogle-perftools-dev" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends libgoogle-perftools-dev >/dev/null
fi
libprofiler=$(ls /usr/lib/*-linux-gnu/libprofiler.so 2>/dev/null | head -n 1)
[ -n "$libprofiler" ] || { echo "benchmark: libprofiler.so not found" >&2; exit 1; }
if ! command -v swift >/dev/null && [ -x /opt/swift/usr/bin/swift ]; then export PATH=/opt/swift/usr/bin:$PATH; fi

swift build -c release --scratch-path .build-rel --product pprof-benchmarks
bin=.build-rel/release/pprof-benchmarks
out=bench-out
mkdir -p "$out"

handler_args=() overhead_args=() gperf_args=()
if [ $quick -eq 1 ]; then
    handler_args=(--batches 200)
    overhead_args=(--pairs 2 --iterations 200000000 --latency-seconds 1 --latency-repetitions 1)
    gperf_args=(--pairs 2 --iterations 200000000)
fi

started=$(date +%s)
"$bin" handler-cost --summary "$out/handler.txt" "${handler_args[@]}" | tee "$out/handler.log"
"$bin" overhead --summary "$out/overhead.txt" "${overhead_args[@]}" | tee "$out/overhead.log"
"$bin" gperftools --library "$libprofiler" --summary "$out/gperftools.txt" "${gperf_args[@]}" | tee "$out/gperftools.log"
finished=$(date +%s)

{
    echo
    echo "## Results"
    echo
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'),"
    echo "Linux $(uname -r), $(swift --version 2>&1 | head -n 1)."
    echo "Measured $(date -u +%Y-%m-%d) in $((finished - started)) s; logs in $out/."
    echo
    "$bin" report "$out/handler.txt" "$out/overhead.txt" "$out/gperftools.txt"
} | tee "$out/table.md"
