import CPprofTestHooks
import CPprof
import Foundation
import Testing
@testable import Pprof

/// The sampler itself, without HTTP: thread coverage and clean stops.
extension ProcessWideStateTests {
    @Suite("CPU profiler", .serialized)
    struct CPUProfilerTests {
        private func functionNames(in profile: CPUProfile) -> [String: Int64] {
            var names: [String: Int64] = [:]
            for (stack, counts) in profile.stacks {
                let fns = Set(stack.flatMap { Symbolizer.shared.frames(at: $0).map(\.function) })
                for f in fns { names[f, default: 0] += counts.samples }
            }
            return names
        }

        @Test("a thread started during a profile is sampled too")
        func threadStartedDuringProfile() throws {
            let workload = MeasuredWorkload()
            let starter = Thread {
                usleep(300_000)
                workload.startGammaOnly()
            }
            starter.start()
            defer { workload.stop() }
            let profile = try CPUProfiler.shared.profile(seconds: 2, hz: 100, isCancelled: { false })
            let gammaCPU = workload.totals()["spinGamma"] ?? 0
            let names = functionNames(in: profile)
            let gamma = names.first { $0.key.contains("spinGamma") }?.value ?? 0
            // Expected from the CPU the thread really got (a loaded machine may give it little).
            try #require(gammaCPU >= 100_000_000, "the new thread got only \(gammaCPU / 1e6) ms of CPU")
            // At least a few: the point is that it was sampled at all (the machine may be loaded).
                #expect(Double(gamma) >= 0.3 * gammaCPU / 10_000_000, "spinGamma samples: \(gamma); names: \(names.keys.sorted().prefix(20))")
        }

        @Test("stopping leaves no timer, no pending SIGPROF, and the handler harmless")
        func stopLeavesNothing() throws {
            let workload = MeasuredWorkload()
            workload.start()
            defer { workload.stop() }
            let before = workload.totals().values.reduce(0, +)
            let profile = try CPUProfiler.shared.profile(seconds: 1, hz: 250, isCancelled: { false })
            // Samples, if the burners got any CPU at all on this (possibly loaded) machine.
            if workload.totals().values.reduce(0, +) - before > 100_000_000 { #expect(profile.totalSamples > 0) }
            var stats = cpprof_cpu_stats()
            cpprof_cpu_get_stats(&stats)
            #expect(stats.mode == 0 && stats.timers == 0)
            let timers = String(decoding: readWholeFile("/proc/self/timers") ?? [], as: UTF8.self)
            #expect(!timers.contains("signal: \(SIGPROF)/"), "a SIGPROF timer is left:\n\(timers)")
            // A stray SIGPROF after stopping must not kill the process.
            pthread_kill(pthread_self(), SIGPROF)
            usleep(10_000)
        }

        @Test("the frame walk rejects garbage frame pointers without reading them")
        func walkRejectsGarbage() {
            var pcs = [UInt64](repeating: 0, count: 8)
            var local: UInt64 = 0
            let sp = withUnsafeMutablePointer(to: &local) { UInt(bitPattern: $0) }
            let end = sp + 4096
            // Values that would fault if dereferenced: near the top of the
            // address space (where fp + 16 wraps), misaligned, below sp, null.
            for fp: UInt in [UInt.max - 15, UInt.max - 7, sp + 3, sp - 64, 0] {
                let depth = cpprof_walk_frames_for_testing(0x1234, fp, sp, end, &pcs, 8)
                #expect(depth == 1 && pcs[0] == 0x1234, "fp \(String(fp, radix: 16)) walked \(depth) frames")
            }
            // No known stack region: the leaf only.
            #expect(cpprof_walk_frames_for_testing(0x1234, sp, sp, 0, &pcs, 8) == 1)
        }

        @Test("a cancelled profile ends early")
        func cancellation() throws {
            let start = Clock.monotonicNanoseconds()
            let calls = Locked(0)
            _ = try CPUProfiler.shared.profile(seconds: 30, hz: 100, isCancelled: { calls.withLock { $0 += 1; return $0 } > 3 })
            #expect(Clock.monotonicNanoseconds() - start < 10_000_000_000)
        }

        @Test("the handler's frame walk records the calling thread's real stack")
        func recordSelf() {
            var stats = cpprof_cpu_stats()
            cpprof_cpu_get_stats(&stats)
            guard stats.mode == 0 else { return }
            #expect(cpprof_cpu_record_self_for_testing() == 1)
            let buffer = UnsafeMutablePointer<cpprof_sample>.allocate(capacity: 64)
            defer { buffer.deallocate() }
            let n = cpprof_cpu_drain(buffer, 64)
            #expect(n >= 1)
            guard n >= 1 else { return }
            let depth = Int(buffer[n - 1].depth)
            #expect(depth >= 3, "only \(depth) frames")
            let pcs = withUnsafeBytes(of: &buffer[n - 1].pcs) { Array($0.bindMemory(to: UInt64.self).prefix(depth)) }
            let names = pcs.enumerated().flatMap { i, pc in Symbolizer.shared.frames(at: i == 0 ? pc : pc - 1).map(\.function) }
            #expect(names.first == "cpprof_cpu_record_self_for_testing")
            #expect(names.contains { $0.contains("recordSelf") }, "\(names)")
        }
    }
}

