#!/usr/bin/env bash
# First scrape against warm ones, and the profiler's memory, on the demo
# (Docs/Benchmarks.md, "First scrape and memory"):
#   ./Scripts/first-scrape.sh [DEMO_BINARY] [RUNS] [WAIT_SECONDS] [LOAD_THREADS]
# Per run and per mode, rotating the order: "targeted" (the default: the read-ahead of what the
# threads' stacks need), "lazy" (PPROF_SYMBOL_PRELOAD=0: read on first use) and "preload"
# (PPROF_SYMBOL_PRELOAD=1: every object read ahead); MODES="lazy targeted" picks some. Starts the demo on free ports, waits WAIT_SECONDS, then times the
# first /goroutine?debug=2, 5 more, one more after a pause as long as the
# first one's since the read-ahead (GAP_SECONDS), the first /profile?seconds=1 and 3 more;
# reads the demo's RSS before the first request and after one scrape of
# every endpoint, and the heap profile's profiler_memory_bytes comment; and
# whether the read-ahead thread was still running at the first request, and
# what the read-ahead reported in the heap profile's comment (finished, when
# after start, its thread's CPU time).
# Besides wall time, the CPU time the profiler's threads (named pprof-*)
# spent on each /goroutine?debug=2 (from /proc/PID/task/*/schedstat: the
# machine's load does not inflate it the way it inflates wall time).
# Prints one line per run and mode.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${1:-.build/release/pprof-demo}
runs=${2:-5}
wait_seconds=${3:-10}
load_threads=${4:-3}
[ -x "$demo" ] || { echo "first-scrape: build the demo first: swift build -c release --product pprof-demo" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ms() { curl -s -o /dev/null -w '%{time_total}' "$1" | awk '{printf "%.1f", $1 * 1000}'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# Anonymous and file-backed RSS (the mapped symbol files are page cache): "anon/file" KiB.
rss_split() { awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print a "/" f}' "/proc/$1/status"; }
# CPU time of the demo's pprof-* threads so far, in microseconds.
pprof_cpu_us() {
    local total=0 task
    for task in /proc/$1/task/*; do
        case "$(cat "$task/comm" 2>/dev/null)" in pprof-*) total=$((total + $(cut -d' ' -f1 "$task/schedstat" 2>/dev/null || echo 0))) ;; esac
    done
    echo $((total / 1000))
}
# Times a request: "wall_ms cpu_ms" (cpu: the profiler's threads).
timed() {
    local before after wall
    before=$(pprof_cpu_us "$1")
    wall=$(ms "$2")
    after=$(pprof_cpu_us "$1")
    echo "$wall $(awk -v d=$((after - before)) 'BEGIN {printf "%.1f", d / 1000}')"
}
# a / b to two decimals, 0 if b is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

one_run() { # mode: targeted|lazy|preload
    local mode=$1 env=()
    [ "$mode" = preload ] && env=(PPROF_SYMBOL_PRELOAD=1)
    [ "$mode" = lazy ] && env=(PPROF_SYMBOL_PRELOAD=0)
    local pport hport
    pport=$(free_port); hport=$(free_port)
    env "${env[@]}" "$demo" --pprof-address "127.0.0.1:$pport" --http-address "127.0.0.1:$hport" \
        --load-threads "$load_threads" >/dev/null 2>&1 &
    local pid=$!
    local base="http://127.0.0.1:$pport/debug/pprof"
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$hport/" 2>/dev/null && break; sleep 0.1; done
    sleep "$wait_seconds"
    local rss0 split0; rss0=$(rss_kib $pid); split0=$(rss_split $pid)
    # 1 if the read-ahead thread is still at work when the first request comes.
    local preloading; preloading=$(cat /proc/$pid/task/*/comm 2>/dev/null | grep -c '^pprof-preload$' || true)
    local g_first g_first_cpu g_warm="" g_warm_cpu="" one
    read -r g_first g_first_cpu < <(timed $pid "$base/goroutine?debug=2")
    for _ in 1 2 3 4 5; do
        one=$(timed $pid "$base/goroutine?debug=2")
        g_warm+=" ${one% *}"; g_warm_cpu+=" ${one#* }"
    done
    # A warm dump after as long a pause as the first had since the read-ahead's
    # last capture (GAP_SECONDS, default 7): threads that ran meanwhile are read and
    # unwound again (a dump reuses only the stacks of threads that have not run
    # since the previous one), whatever the symbols.
    local g_gap g_gap_cpu
    sleep "${GAP_SECONDS:-7}"
    read -r g_gap g_gap_cpu < <(timed $pid "$base/goroutine?debug=2")
    local p_first; p_first=$(ms "$base/profile?seconds=1")
    local p_warm=""; for _ in 1 2 3; do p_warm+=" $(ms "$base/profile?seconds=1")"; done
    for t in "" cmdline heap allocs "goroutine?debug=1" goroutine threadcreate block mutex symbol "heap?debug=1"; do
        curl -s -o /dev/null "$base/$t"
    done
    local rss1 split1; rss1=$(rss_kib $pid); split1=$(rss_split $pid)
    local heap; heap=$(curl -s "$base/heap?debug=1")
    local own; own=$(echo "$heap" | sed -n 's/.*profiler_memory_bytes=\([0-9]*\).*/\1/p' | head -n 1)
    local ahead; ahead=$(echo "$heap" | sed -n 's/.*swift-pprof: \(symbol_read_ahead=.*\)/\1/p' | head -n 1 | tr ' ' ',')
    local load; load=$(cut -d' ' -f1 /proc/loadavg)
    kill $pid; wait $pid 2>/dev/null || true
    local gw gwc pw; gw=$(echo $g_warm | median); gwc=$(echo $g_warm_cpu | median); pw=$(echo $p_warm | median)
    echo "$mode load=$load goroutine_first_ms=$g_first goroutine_warm_median_ms=$gw" \
         "goroutine_first_cpu_ms=$g_first_cpu goroutine_warm_cpu_median_ms=$gwc" \
         "ratio_cpu=$(ratio "$g_first_cpu" "$gwc")" \
         "ratio_wall=$(ratio "$g_first" "$gw")" \
         "goroutine_after_gap_ms=$g_gap goroutine_after_gap_cpu_ms=$g_gap_cpu" \
         "ratio_cpu_gap=$(ratio "$g_first_cpu" "$g_gap_cpu")" \
         "ratio_wall_gap=$(ratio "$g_first" "$g_gap")" \
         "profile1s_first_ms=$p_first profile1s_warm_median_ms=$pw" \
         "profile_ratio=$(ratio "$p_first" "$pw")" \
         "preload_running_at_first_request=$preloading rss_before_kib=$rss0 rss_after_kib=$rss1 profiler_memory_bytes=$own" \
         "rss_anon_file_before_kib=$split0 rss_anon_file_after_kib=$split1" \
         "read_ahead=$ahead goroutine_warm_cpu_ms=$(echo $g_warm_cpu | tr ' ' ',')" \
         "goroutine_warm_ms=$(echo $g_warm | tr ' ' ',')"
}

read -r -a modes <<< "${MODES:-targeted lazy preload}"
for i in $(seq "$runs"); do
    # Rotate the order, so that no mode always runs first (or after the same one).
    for k in $(seq 0 $((${#modes[@]} - 1))); do
        one_run "${modes[$(( (i + k) % ${#modes[@]} ))]}"
    done
done
