#!/usr/bin/env bash
# Checks, on the machine code, that the signal handlers call nothing that
# allocates, locks or is not async-signal-safe.
#
# How: the C files whose code runs in SIGPROF handlers are compiled here, at
# -O0 (every call visible) and -O2 (what a release build runs: inlining,
# tail calls, calls the compiler adds such as memcpy), with the flags SwiftPM
# uses. `objdump -dr` gives every direct call and tail jump, with the symbol of
# each relocation. From the handler entry point (sigprof_handler in
# sigprof.c, the one SIGPROF handler, which dispatches to cpu_sampler.c and
# dump_slots.c by name) the call graph is followed
# through every function defined in these objects; each function outside
# them must be in ALLOW. Indirect calls are allowed only where the handlers
# pass a foreign SIGPROF on to the handler installed before ours (the
# application's): chain_previous, or the handler it was inlined into.
#
# What it cannot see: code reached through a function pointer other than the
# chained handler (there is none), and what the allowed libc functions do
# (they are async-signal-safe by POSIX or are raw system calls).
#
# Usage: Scripts/check-signal-handlers.sh [-v]     (CC and OBJDUMP may be set)
set -euo pipefail
cd "$(dirname "$0")/.."

verbose=0
[ "${1:-}" = "-v" ] && verbose=1

# The toolchain's clang (the one SwiftPM compiles CPprof with), else any clang.
swift_bin=""
if swift_path=$(command -v swift); then swift_bin=$(dirname "$(readlink -f "$swift_path")"); fi
CC=${CC:-$( [ -n "$swift_bin" ] && [ -x "$swift_bin/clang" ] && echo "$swift_bin/clang" || command -v clang || true)}
OBJDUMP=${OBJDUMP:-$(command -v objdump || command -v llvm-objdump || echo "$swift_bin/llvm-objdump")}
if [ -z "$CC" ] || [ ! -x "$CC" ] || [ ! -x "$OBJDUMP" ]; then
    echo "check-signal-handlers: needs clang and objdump (CC=$CC OBJDUMP=$OBJDUMP)" >&2
    exit 2
fi

# Every file with code a handler reaches.
FILES=(async_walk dump_slots sigprof cpu_sampler frame_walk sample_ring stack_map thread_stack)
ROOTS=(sigprof_handler)
# Outside our objects, only these: async-signal-safe or raw system calls.
#   __errno_location  errno, saved and restored by each handler
#   syscall           gettid, futex(FUTEX_WAKE): raw system calls
#   getpid            async-signal-safe (POSIX); async_walk.c's process_vm_readv
#                     reader, a branch the handlers never take (they read the snapshot)
#   clock_gettime     async-signal-safe (POSIX)
#   memcpy, memset    async-signal-safe (POSIX.1-2016); compiler-emitted copies
#   __stack_chk_fail  stack protector, if enabled: aborts
ALLOW=(__errno_location syscall getpid clock_gettime memcpy memset __stack_chk_fail)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
for opt in -O0 -O2; do
    for f in "${FILES[@]}"; do
        "$CC" "$opt" -g0 -fPIC -fno-omit-frame-pointer -D_GNU_SOURCE -DCPPROF_HEAP_PROFILING \
            -ISources/CPprof/include -c "Sources/CPprof/$f.c" -o "$work/$f.o"
    done
    "$OBJDUMP" -d -r --no-show-raw-insn "$work"/*.o > "$work/listing.txt"

    # One line per edge: "caller callee"; callee "*" for an indirect call.
    awk '
        /^[0-9a-f]+ <[^>]+>:$/ { fn = $2; gsub(/[<>:]/, "", fn); print "def", fn; pending = ""; next }
        {
            if (pending != "") {
                if ($0 ~ /R_X86_64_(PLT32|PC32|GOTPCRELX|REX_GOTPCRELX)/ && $0 ~ /^[ \t]+[0-9a-f]+: R_X86_64/) {
                    sym = $3; sub(/[-+]0x[0-9a-f]+$/, "", sym)
                    if (sym !~ /^\./) { print "edge", fn, sym; pending = ""; next }
                }
                if (pending != "-") print "edge", fn, pending
                pending = ""
            }
            if ($0 ~ /^[ \t]+[0-9a-f]+:[ \t]+(call|jmp)[a-z]*[ \t]/) {
                if ($0 ~ /(call|jmp)[a-z]*[ \t]+\*/) {
                    if ($0 ~ /\(%rip\)/) { pending = "*"; next } # through the GOT: the relocation names it
                    print "edge", fn, "*"; next
                }
                target = $0; sub(/.*</, "", target); sub(/>.*/, "", target); sub(/\+0x[0-9a-f]+$/, "", target)
                pending = (target == fn) ? "-" : target
            }
        }
        END { if (pending != "" && pending != "-") print "edge", fn, pending }
    ' "$work/listing.txt" > "$work/graph.txt"

    declare -A defined=() allowed=()
    while read -r kind a _; do [ "$kind" = def ] && defined[$a]=1; done < "$work/graph.txt"
    for a in "${ALLOW[@]}"; do allowed[$a]=1; done

    for root in "${ROOTS[@]}"; do
        if [ -z "${defined[$root]:-}" ]; then
            echo "check-signal-handlers ($opt): handler $root not found: the check proves nothing" >&2
            status=1
            continue
        fi
        declare -A seen=()
        queue=("$root")
        seen[$root]=1
        reached=()
        external=()
        while [ ${#queue[@]} -gt 0 ]; do
            fn=${queue[0]}
            queue=("${queue[@]:1}")
            reached+=("$fn")
            while read -r kind caller callee; do
                [ "$kind" = edge ] && [ "$caller" = "$fn" ] || continue
                if [ "$callee" = "*" ]; then
                    if [ "$fn" != chain_previous ] && { [ "$opt" = -O0 ] || [ "$fn" != "$root" ]; }; then
                        echo "check-signal-handlers ($opt): $root -> $fn makes an indirect call" >&2
                        status=1
                    fi
                    continue
                fi
                [ -n "${seen[$callee]:-}" ] && continue
                seen[$callee]=1
                if [ -n "${defined[$callee]:-}" ]; then
                    queue+=("$callee")
                elif [ -n "${allowed[$callee]:-}" ]; then
                    external+=("$callee")
                else
                    echo "check-signal-handlers ($opt): $root reaches $callee (from $fn), which is not on the allow-list" >&2
                    status=1
                fi
            done < "$work/graph.txt"
        done
        if [ "$verbose" = 1 ] || [ "$status" != 0 ]; then
            echo "$opt $root: ours: ${reached[*]}; libc: ${external[*]:-none}"
        fi
        unset seen
    done
    unset defined allowed
done

if [ "$status" = 0 ]; then
    echo "check-signal-handlers: sigprof_handler (CPU samples, dump captures) calls only our own code and ${ALLOW[*]} (-O0 and -O2)"
fi
exit "$status"
