#!/usr/bin/env bash
# Instructions per malloc+free pair and per Swift class alloc+release, under
# valgrind's callgrind (exact counts, unaffected by other load):
#   ./Scripts/callgrind-alloc.sh LABEL=PATH/TO/pprof-benchmarks ...
# e.g. after ./Scripts/benchmark.sh:
#   ./Scripts/callgrind-alloc.sh none=.build-rel-noheap/release/pprof-benchmarks ours=.build-rel/release/pprof-benchmarks
# Counts only what runs inside AllocMicro.mallocPairs / classPairs (callees
# included) over 500,000 steps, at the default rate and at rate 0. Callgrind
# 3.19 cannot read DWARF 5, so each binary is copied with strip -g first.
set -euo pipefail
command -v valgrind >/dev/null || { echo "callgrind-alloc: apt-get install valgrind" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
per=100000 batches=3
steps=$((per * (batches + 2))) # two warm-up batches
echo "| build | rate | instructions per malloc+free step | per class alloc+release step |"
echo "|---|---|---|---|"
for spec in "$@"; do
    label=${spec%%=*} bin=${spec#*=}
    strip -g -o "$work/$label" "$bin"
    for rate in default 0; do
        r=()
        [ "$rate" != default ] && r=(--rate "$rate")
        per_step=()
        for fn in mallocPairs classPairs; do
            ir=$(valgrind --tool=callgrind --callgrind-out-file="$work/$label-$rate-$fn.out" --toggle-collect="*AllocMicro*$fn*" \
                "$work/$label" alloc-only --mode micro --per-batch $per --batches $batches "${r[@]}" 2>&1 |
                sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
            per_step+=("$(awk -v ir="$ir" -v n="$steps" 'BEGIN {printf "%.1f", ir / n}')")
        done
        echo "| $label | $rate | ${per_step[0]} | ${per_step[1]} |"
    done
done
