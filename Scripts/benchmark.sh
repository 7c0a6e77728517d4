#!/usr/bin/env bash
# Measures what the CPU profiler, the heap sampler and thread dumps cost and
# prints a Markdown table (Docs/Benchmarks.md explains every figure):
# ./Scripts/benchmark.sh [--quick]
# Installs what it needs (Debian packages), builds release twice (with and
# without the malloc interposer), then runs the benchmarks of
# pprof-benchmarks; about 10 minutes on 2 cores.
# --quick: a short smoke run (few pairs), for checking the script only.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

./Scripts/install-deps.sh
# The profilers we compare with: gperftools' CPU and heap profilers
# (libprofiler.so, libtcmalloc.so) and heaptrack.
missing=()
for pkg in libgoogle-perftools-dev heaptrack; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "benchmark: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
libprofiler=$(ls /usr/lib/*-linux-gnu/libprofiler.so 2>/dev/null | head -n 1)
[ -n "$libprofiler" ] || { echo "benchmark: libprofiler.so not found" >&2; exit 1; }
libtcmalloc=$(ls /usr/lib/*-linux-gnu/libtcmalloc.so 2>/dev/null | head -n 1)
[ -n "$libtcmalloc" ] || { echo "benchmark: libtcmalloc.so not found" >&2; exit 1; }
command -v heaptrack >/dev/null || { echo "benchmark: heaptrack not found" >&2; exit 1; }
if ! command -v swift >/dev/null && [ -x /opt/swift/usr/bin/swift ]; then export PATH=/opt/swift/usr/bin:$PATH; fi

swift build -c release --scratch-path .build-rel --product pprof-benchmarks
# The same benchmark without the malloc interposer (HeapProfiling trait off):
# the heap benchmarks' baseline.
swift build -c release --disable-default-traits --scratch-path .build-rel-noheap --product pprof-benchmarks
bin=.build-rel/release/pprof-benchmarks
noheap=.build-rel-noheap/release/pprof-benchmarks
out=bench-out
mkdir -p "$out"

handler_args=() overhead_args=() gperf_args=() heap_args=() endpoint_args=() tools_args=() dump_args=() wall_args=()
if [ $quick -eq 1 ]; then
    handler_args=(--batches 200)
    overhead_args=(--pairs 2 --iterations 200000000 --latency-seconds 1 --latency-repetitions 1)
    gperf_args=(--pairs 2 --iterations 200000000)
    heap_args=(--rounds 2 --workload-rounds 2 --iterations 5000)
    endpoint_args=(--requests 3)
    tools_args=(--rounds 1 --iterations 500)
    dump_args=(--requests 3)
    wall_args=(--pairs 2 --seconds 2)
fi

started=$(date +%s)
"$bin" handler-cost --summary "$out/handler.txt" "${handler_args[@]}" | tee "$out/handler.log"
"$bin" overhead --summary "$out/overhead.txt" "${overhead_args[@]}" | tee "$out/overhead.log"
"$bin" gperftools --library "$libprofiler" --summary "$out/gperftools.txt" "${gperf_args[@]}" | tee "$out/gperftools.log"
"$bin" heap-overhead --baseline "$noheap" --summary "$out/heap.txt" "${heap_args[@]}" | tee "$out/heap.log"
"$bin" heap-endpoint --summary "$out/heap-endpoint.txt" "${endpoint_args[@]}" | tee "$out/heap-endpoint.log"
"$bin" heap-tools --baseline "$noheap" --tcmalloc "$libtcmalloc" --summary "$out/heap-tools.txt" "${tools_args[@]}" \
    | tee "$out/heap-tools.log"
# Thread dumps with one busy thread (a core left free) and with two (both cores busy).
"$bin" thread-dump --busy 1 --summary "$out/threads-1.txt" "${dump_args[@]}" | tee "$out/threads-1.log"
"$bin" thread-dump --busy 2 --summary "$out/threads-2.txt" "${dump_args[@]}" | tee "$out/threads-2.log"
# What a /debug/fgprof profile of 100 server-like threads costs.
"$bin" wall-cost --summary "$out/wall.txt" "${wall_args[@]}" | tee "$out/wall.log"
finished=$(date +%s)

{
    echo
    echo "## Results"
    echo
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'),"
    echo "Linux $(uname -r), $(swift --version 2>&1 | head -n 1)."
    echo "Measured $(date -u +%Y-%m-%d) in $((finished - started)) s; logs in $out/."
    echo
    "$bin" report "$out/handler.txt" "$out/overhead.txt" "$out/gperftools.txt" "$out/heap.txt" \
        "$out/heap-endpoint.txt" "$out/heap-tools.txt" "$out/threads-1.txt" "$out/threads-2.txt" "$out/wall.txt"
} | tee "$out/table.md"
