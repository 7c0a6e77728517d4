#!/usr/bin/env bash
# Runs the test suite under AddressSanitizer and ThreadSanitizer.
#
#   Scripts/sanitizers.sh              both, one after the other
#   Scripts/sanitizers.sh address      ASan only (scratch path .build-asan)
#   Scripts/sanitizers.sh thread       TSan only (scratch path .build-tsan)
#
# Every test runs except those listed below, each for a reason the sanitizer
# imposes, not because it fails for a reason of ours.
#
# Built with --disable-default-traits, that is without the HeapProfiling
# trait: that trait defines malloc, free, calloc, realloc, posix_memalign &c.
# in the executable, and so do ASan and TSan, whose allocators must see every
# block to do their work. Two interposers cannot both own malloc; the
# sanitizers' must win, so these runs leave the heap sampler out (its tests
# skip themselves: HeapSampler.isAvailable is false). Everything else, the
# CPU sampler, thread dumps, pthread_create interposition, the HTTP server,
# the endpoints and every fault test, runs instrumented.
set -euo pipefail
cd "$(dirname "$0")/.."
./Scripts/install-deps.sh

sanitizers=("$@")
[ ${#sanitizers[@]} -eq 0 ] && sanitizers=(address thread)

# Tests that cannot work under any sanitizer:
#  - SymbolizerTests namesAnInternalSwiftFunction, resolvesFileAndLineOfASwiftFunction:
#    they take their own address with backtrace(), which the sanitizers
#    intercept: the frame they get is __interceptor_backtrace.
#  - PprofHandlerCancellationTests handlerCancellation: a 30 s bound on a cancelled
#    profile, encoding included; instrumented, and waiting for the
#    symbolizer while other tests load DWARF in it, the encoding alone can
#    take longer (the cancellation itself is prompt).
#  - UnitDebugInfoTests aLookupReadsOnlyTheUnitsAroundItsAddress: the same probe
#    (backtrace()), so the unit it reads is the interceptor's; the per-unit
#    tables are still compared with the whole image's under both sanitizers.
#  - FaultDescriptorTests symbolsAreRetriedAfterEMFILE: its probe takes its own address
#    from backtrace(), which the sanitizers intercept, so the address named
#    is the interceptor's; the EMFILE retry itself is the same code either way.
#  - FaultHTTPTests pipelinedFlood: 1000 pipelined requests on one connection
#    within 30 s; instrumented and beside the other suites on 2 cores, 539
#    were answered in that window. Uninstrumented runs check it.
#  - FaultMemoryTests survivesAnAddressSpaceLimit: its child serves under
#    RLIMIT_AS set a few MiB above its VmSize; the sanitizers reserve
#    terabytes of shadow memory and map more as the process runs, so the
#    limit would stop the sanitizer's own runtime, not test the library.
#  - FlameGraphPageTests/inBrowser: it checks the flame graph page's script in
#    headless Chromium, a separate uninstrumented process; the library code
#    it goes through is covered by the other page and format tests, and the
#    browser adds half a minute to an instrumented run.
common_skips=(
    'FaultDescriptorTests/symbolsAreRetriedAfterEMFILE'
    'FaultHTTPTests/pipelinedFlood'
    'FaultMemoryTests/survivesAnAddressSpaceLimit'
    'FlameGraphPageTests/inBrowser'
    'SymbolizerTests/namesAnInternalSwiftFunction'
    'SymbolizerTests/resolvesFileAndLineOfASwiftFunction'
    'UnitDebugInfoTests/aLookupReadsOnlyTheUnitsAroundItsAddress'
    'PprofHandlerCancellationTests/handlerCancellation'
)
# And under ThreadSanitizer:
#  - readsLinesFromSeparateCompressedDebugFiles: it looks up
#    glibc's abort(), which TSan replaces with its interceptor (no libc frame).
#  - framePointerFallbackStillWalksSwiftCode, cpuSplitMatchesGroundTruth:
#    they need frame-pointer stacks through the busy loop; TSan instruments
#    every access with calls into its runtime, which keeps no frame pointers,
#    so the walk stops there.
#  - nothingWrittenToDisk: TSan itself creates /tmp/tsan.rodata.<pid>.
#  - libraryUnloadedBetweenCaptureAndUnwind: TSan defers an asynchronous
#    signal until the thread next enters instrumented code or an interceptor;
#    the test's thread is busy inside libbz2 (not instrumented), so it cannot
#    answer the dump within its deadline.
#  - threadThatBlocksTheSignalIsReportedWithinTheDeadline: TSan defers the
#    signal's delivery, so the other threads' answers race the short deadline.
#  - goroutineDelta: threads started 0.6 s into a 1 s delta window must be up
#    before it closes, which instrumented thread start-up does not promise.
#  - threadStartedDuringProfile: samples in proportion to the CPU of a thread
#    started 0.3 s into a 2 s profile; TSan's deferred delivery of signals
#    leaves fewer now and then.
#  - FaultSignalChainTests appHandlerIsChained: it counts that none of the
#    app's own SIGPROFs is lost. SIGPROF does not queue: one that arrives
#    while a timer's SIGPROF is still pending for the thread merges with it
#    (kernel semantics, in any build). TSan holds signals back until the
#    thread next enters its runtime, which widens that window enough to lose
#    one now and then; uninstrumented runs check it strictly.
#  - AsyncStackTests cpuProfileShowsAwaitingCallers: it needs a few dozen CPU
#    samples of the async leaf in 5 s; instrumented, the leaf loop ran too
#    slowly on 2 busy cores (12 samples). The chain itself is still walked
#    under TSan by the async churn, dump and goroutine tests.
#  - AsyncStackTests threadDumpShowsChain: the dump must catch a pool thread
#    inside a tight arithmetic loop; TSan defers the signal until the thread
#    enters its runtime, which that loop never does, so the thread does not
#    answer in time (as for libraryUnloadedBetweenCaptureAndUnwind). The
#    chain in dumps is still read under TSan by the churn test.
#  - AsyncStackTests goroutineDebug2ShowsChain: for the same reason the
#    dump signal reaches the spinning thread inside TSan's runtime
#    (`__tsan::MemoryAccess`, no frame pointers), where the handler's walk
#    to the awaiting callers can be cut: the chain was missing in 1 of 16
#    runs of 6c9799b and 6 of 19 of 721b461 under TSan, 0 of 12 of the
#    latter uninstrumented, where it is checked as written. The churn test
#    counts chains under TSan and allows cut ones.
#  - FaultLoadTests hammerEveryEndpoint: it wants 32 requests from 16
#    clients in 5 s; instrumented by TSan on 2 cores the server answered 25.
#    Uninstrumented and under ASan it is checked as written.
#  - AsyncStackTests syncStacksUnchanged: it checks exact frame-pointer
#    stacks through a busy loop, which TSan's runtime calls (no frame
#    pointers) may cut, as for cpuSplitMatchesGroundTruth below.
#  - SignalSafetyTests cpuRefusesForeignHandler: TSan interposes sigaction
#    and delivers signals itself, so "another handler took SIGPROF" is not
#    what the process sees under it; checked uninstrumented and under ASan.
thread_skips=(
    'AsyncStackTests/threadDumpShowsChain'
    'AsyncStackTests/goroutineDebug2ShowsChain'
    'FaultLoadTests/hammerEveryEndpoint'
    'AsyncStackTests/syncStacksUnchanged'
    'FaultSignalChainTests/appHandlerIsChained'
    'SignalSafetyTests/cpuRefusesForeignHandler'
    'AsyncStackTests/cpuProfileShowsAwaitingCallers'
    'CPUProfilerTests/threadStartedDuringProfile'
    'ThreadEndpointTests/goroutineDelta'
    'SymbolizerTests/readsLinesFromSeparateCompressedDebugFiles'
    'ThreadDumperTests/framePointerFallbackStillWalksSwiftCode'
    'cpuSplitMatchesGroundTruth'
    'nothingWrittenToDisk'
    'ThreadDumperTests/libraryUnloadedBetweenCaptureAndUnwind'
    'ThreadDumperTests/threadThatBlocksTheSignalIsReportedWithinTheDeadline'
)

# Swift's crash backtracer forks a helper; under TSan that aborts in the
# runtime (CHECK failed in ForkAfter) and hides the real report.
export SWIFT_BACKTRACE=enable=no

failed=()
for sanitizer in "${sanitizers[@]}"; do
    case "$sanitizer" in
    address)
        scratch=.build-asan
        skips=("${common_skips[@]}")
        # Leak detection off: leaks are not what these runs look for, the
        # XCTest harness leaks at exit, and the profiler keeps some memory for
        # the process's life on purpose (the sample ring, retired stack maps
        # a handler might still read).
        export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1"
        ;;
    thread)
        scratch=.build-tsan
        skips=("${common_skips[@]}" "${thread_skips[@]}")
        # Reports fail the run (exit code 66), the child processes some tests
        # start included. See the suppressions file for the one thing TSan
        # cannot see on Linux: Swift's Synchronization.Mutex.
        export TSAN_OPTIONS="suppressions=$PWD/Scripts/tsan-suppressions.txt:halt_on_error=0:exitcode=66:history_size=4"
        ;;
    *)
        echo "usage: $0 [address|thread]..." >&2
        exit 2
        ;;
    esac
    skip_args=()
    for s in "${skips[@]}"; do skip_args+=(--skip "$s"); done
    echo "=== $sanitizer sanitizer ($scratch) ==="
    start=$(date +%s)
    if swift build --build-tests --sanitize="$sanitizer" --disable-default-traits --scratch-path "$scratch" \
            -Xswiftc -warnings-as-errors &&
        swift test --skip-build --sanitize="$sanitizer" --disable-default-traits --scratch-path "$scratch" \
            "${skip_args[@]}"; then
        echo "=== $sanitizer sanitizer: passed in $(( $(date +%s) - start )) s ==="
    else
        echo "=== $sanitizer sanitizer: FAILED after $(( $(date +%s) - start )) s ==="
        failed+=("$sanitizer")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "sanitizers.sh: failed under: ${failed[*]}" >&2
    exit 1
fi
