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
            // RLIMIT_SIGPENDING bounds the signals queued (and the timers held)
            // by every process of this user together, other tests' child
            // processes included: a fixed limit of 8 left no room for even the
            // profiler's probe timer whenever they held 8, and the profile fell
            // back to the process-wide timer. So the limit is what the user
            // holds now (SigQ in /proc/self/status) plus 16, and enough parked
            // threads are started that a quarter of it is fewer than this
            // process has threads, however many other tests start or end.
            let held = try #require(userQueuedSignals())
            let limit = held + 16
            let stop = FaultFlag()
            var parked: [pthread_t] = []
            defer {
                stop.set()
                for thread in parked { pthread_join(thread, nil) }
            }
            for _ in 0..<(limit / 4 + 8) {
                parked.append(try #require(faultSpawn { while !stop.isSet { usleep(5_000) } }))
            }
            #expect(liveThreadIDs().count > limit / 4)
            var low = saved
            low.rlim_cur = rlim_t(limit)
            #expect(setrlimit(RLIMIT_SIGPENDING_RAW, &low) == 0)
            defer { setrlimit(RLIMIT_SIGPENDING_RAW, &saved) }
            let profile = try CPUProfiler.shared.profile(seconds: 1, hz: 100, isCancelled: { false })
            let context = "limit \(limit) (the user held \(held) before, \(userQueuedSignals() ?? -1) now)"
            #expect(profile.perThreadTimers, "the probe timer was refused: \(context)")
            #expect(profile.threadsWithoutTimer > 0, "\(context)")
            let encoded = try DecodedProfile(bytes: profile.profileData().encoded(symbols: Symbolizer.shared))
            #expect(encoded.comments.contains { encoded.string($0).contains("threads were not sampled") })
        }
    }
}

/// Signals queued (and timers held) by this process's user, all its
/// processes together: the first number of SigQ in /proc/self/status.
private func userQueuedSignals() -> Int? {
    guard let status = readWholeFile("/proc/self/status") else { return nil }
    let line = String(decoding: status, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("SigQ:") }
    return line.flatMap { Int($0.dropFirst(5).split(separator: "/").first?.trimmingCharacters(in: .whitespaces) ?? "") }
}

/// RLIMIT_SIGPENDING (11 on Linux), which Glibc's Swift overlay does not import.
private let RLIMIT_SIGPENDING_RAW = __rlimit_resource_t(11)
