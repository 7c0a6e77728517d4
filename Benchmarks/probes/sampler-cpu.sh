#!/bin/bash
# The wall-clock sampler's own CPU time, in ms per second of profile
# (Docs/Benchmarks.md, "Issue 10, the cost of /debug/fgprof, continued").
# Runs `pprof-benchmarks wall-cost`, whose warm-up window is a profile of
# SECONDS + 3 s, and reads /proc/PID/task/TID/schedstat (time on a CPU) of
# its `pprof-worker` threads 1.5 s into it and SECONDS later: the thread
# that ran the profile is the one that used the most. Less distorted by the
# machine's load than the process's CPU time, which the workers' share swings.
#
#   Benchmarks/probes/sampler-cpu.sh .build/release/pprof-benchmarks [SECONDS]
BIN=$1
W=${2:-12}
"$BIN" wall-cost --pairs 1 --seconds $((W + 3)) > /dev/null 2>&1 &
P=$!
sleep 1.5
declare -A before
for t in /proc/$P/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = pprof-worker ] && before[$t]=$(cut -d' ' -f1 "$t/schedstat")
done
t0=$(date +%s%N)
sleep "$W"
best=0
for t in "${!before[@]}"; do
    n=$(cut -d' ' -f1 "$t/schedstat" 2>/dev/null)
    [ -z "$n" ] && continue
    d=$((n - ${before[$t]}))
    [ $d -gt $best ] && best=$d
done
t1=$(date +%s%N)
kill $P
wait $P 2>/dev/null
echo "sampler: $(echo "scale=1; $best * 1000 / ($t1 - $t0)" | bc) ms of CPU per s"
