import CPprof
import Foundation
import Testing
@testable import Pprof

/// What happens when the process around the profiler changes SIGPROF or runs
/// short of kernel resources: the profiler steps back, it never kills the host.
extension ProcessWideStateTests {
    @Suite("SIGPROF taken or scarce", .serialized)
    struct SignalSafetyTests {
        @Test("a thread dump refuses, without sending a signal, when SIGPROF was reset to SIG_DFL")
        func dumpRefusesWhenSigprofIsDefault() throws {
            _ = ThreadDumper.dump(deadlineMilliseconds: 50) // our handler is installed
            var ours = sigaction()
            sigaction(SIGPROF, nil, &ours)
            var dfl = sigaction()
            dfl.__sigaction_handler.sa_handler = SIG_DFL
            sigaction(SIGPROF, &dfl, nil)
            // A dump now would kill the process if it signalled anyone.
            let threads = ThreadDumper.dump(deadlineMilliseconds: 100)
            sigaction(SIGPROF, &ours, nil)
            #expect(threads.isEmpty)
            let profile = GoroutineProfile().collect()
            #expect(!profile.samples.isEmpty, "dumps work again once the handler is back")
        }

        @Test("a CPU profile refuses to start while another handler owns SIGPROF, and stops if one takes it")
        func cpuRefusesForeignHandler() throws {
            // Both of our handlers installed, as they are after any profile and dump.
            _ = try CPUProfiler.shared.profile(seconds: 0, hz: 100, isCancelled: { true })
            _ = ThreadDumper.dump(deadlineMilliseconds: 50)
            var ours = sigaction()
            sigaction(SIGPROF, nil, &ours)
            var foreign = sigaction()
            foreign.__sigaction_handler.sa_handler = { _ in }
            sigemptyset(&foreign.sa_mask)
            sigaction(SIGPROF, &foreign, nil)
            defer { sigaction(SIGPROF, &ours, nil) }
            #expect(throws: CPUProfilerError.startFailed(EEXIST)) {
                try CPUProfiler.shared.profile(seconds: 1, hz: 100, isCancelled: { false })
            }
            sigaction(SIGPROF, &ours, nil)

            // Taken while sampling: the next thread sync stops the timers.
            let workload = MeasuredWorkload()
            workload.start()
            defer { workload.stop() }
            let taken = foreign
            let taker = Thread {
                usleep(300_000)
                var action = taken
                sigaction(SIGPROF, &action, nil)
            }
            taker.start()
            let profile = try CPUProfiler.shared.profile(seconds: 2, hz: 100, isCancelled: { false })
            sigaction(SIGPROF, &ours, nil)
            #expect(profile.handlerLost)
            var stats = cpprof_cpu_stats()
            cpprof_cpu_get_stats(&stats)
            #expect(stats.timers == 0 && stats.mode == 0)
            let timers = String(decoding: readWholeFile("/proc/self/timers") ?? [], as: UTF8.self)
            #expect(!timers.contains("signal: \(SIGPROF)/"), "a SIGPROF timer is left:\n\(timers)")
        }

        @Test("per-thread timers stay within a share of RLIMIT_SIGPENDING; the rest are counted")
        func timerCapFollowsSigpendingLimit() throws {
            var saved = rlimit()
            getrlimit(RLIMIT_SIGPENDING_RAW, &saved)
            let workload = MeasuredWorkload()
            workload.start()
            defer { workload.stop() }
            usleep(50_000)
            // A limit of 8 allows 2 timers (a quarter): fewer than this process
            // has threads (the workload's 2, the main thread, the test runner's),
            // however many tests running beside it start or end meanwhile (a
            // limit derived from the thread count of the moment was not).
            #expect(liveThreadIDs().count > 2)
            var low = saved
            low.rlim_cur = 8
            #expect(setrlimit(RLIMIT_SIGPENDING_RAW, &low) == 0)
            defer { setrlimit(RLIMIT_SIGPENDING_RAW, &saved) }
            let profile = try CPUProfiler.shared.profile(seconds: 1, hz: 100, isCancelled: { false })
            #expect(profile.threadsWithoutTimer > 0)
            let encoded = try DecodedProfile(bytes: profile.builder().encode(symbols: Symbolizer.shared))
            #expect(encoded.comments.contains { encoded.string($0).contains("threads were not sampled") })
        }
    }
}

/// RLIMIT_SIGPENDING (11 on Linux), which Glibc's Swift overlay does not import.
private let RLIMIT_SIGPENDING_RAW = __rlimit_resource_t(11)
