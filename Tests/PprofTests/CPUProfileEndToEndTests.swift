import Foundation
import Testing
@testable import Pprof

/// Converts pprof's duration text ("2.62s", "110ms", "40us", "7ns") to nanoseconds.
private func nanoseconds(_ text: String) -> Double? {
    for (suffix, scale) in [("ms", 1e6), ("us", 1e3), ("ns", 1.0), ("s", 1e9)] where text.hasSuffix(suffix) {
        return Double(text.dropLast(suffix.count)).map { $0 * scale }
    }
    return nil
}

extension ProcessWideStateTests {
    @Suite("CPU profile, end to end through go tool pprof", .serialized)
    struct CPUProfileEndToEndTests {
        @Test("the CPU split across functions and threads matches each thread's own CPU clock")
        func cpuSplitMatchesGroundTruth() throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let workload = MeasuredWorkload()
            workload.start()
            // The ground truth is what the burners got within the profile's
            // own window (its time_nanos and duration_nanos): other tests share
            // these two cores, so shares drift over time. (The window of the
            // sampling session is not the profile's: another suite's request
            // can start the session earlier or keep it going later, and a
            // truth taken over it once put 7.4 s of the burners' CPU against a
            // profile that saw 5.1 s, the shares 13 points apart.)
            let timeline = WorkloadTimeline(workload)
            let response: StrictResponse
            do {
                defer { workload.stop() }
                response = try TestHTTP.request(port: server.port!, target: "/debug/pprof/profile?seconds=4")
                timeline.stop()
            }
            try #require(response.status == 200)
            // go tool pprof reads the very bytes whose comments explain a miss.
            let file = try GoPprof.temporaryFile(response.body, name: "cpu-split.pb.gz")
            defer { try? FileManager.default.removeItem(atPath: file) }
            let output = try GoPprof.run(["-traces", file])
            let decoded = try DecodedProfile(gzipped: response.body)
            let comments = decoded.comments.map { decoded.string($0) }.joined(separator: "\n")
            let traces = GoPprof.parseTraces(output)
            var profiled = ["spinAlpha": 0.0, "spinBeta": 0.0, "spinGamma": 0.0]
            var sawCaller = false
            // Samples of the burners' loops that name no burner (a walk that
            // skipped it), and of everything else, for a failure's message.
            var unmatched: [(ns: Double, frames: String)] = []
            for trace in traces {
                guard let ns = nanoseconds(trace.value) else { continue }
                if !profiled.keys.contains(where: { name in trace.functions.contains { $0.contains(name) } }) {
                    unmatched.append((ns, trace.functions.prefix(6).joined(separator: " <- ")))
                }
                for name in profiled.keys where trace.functions.first(where: { $0.contains(name) }) != nil {
                    profiled[name]! += ns
                    // The walk must reach past the leaf into the loop that called it.
                    if trace.functions.contains(where: { $0.contains("mixedLoop") || $0.contains("gammaLoop") }) { sawCaller = true }
                    // Names are demangled Swift, not the mangled symbol.
                    #expect(!trace.functions.contains { $0.hasPrefix("$s") }, "mangled name in \(trace.functions)")
                }
            }
            let truth = timeline.change(from: decoded.timeNanos, to: decoded.timeNanos + decoded.durationNanos)
            let truthTotal = truth.values.reduce(0, +)
            let profiledTotal = profiled.values.reduce(0, +)
            #expect(truthTotal > 0, "the profile's window was not observed")
            // At 100 Hz, 4 s of two busy threads is up to ~800 samples; ask for far fewer.
            #expect(profiledTotal >= 50 * 10_000_000, "too little workload CPU in the profile:\n\(output.prefix(2000))")
            #expect(sawCaller, "no stack reached the calling loop:\n\(output.prefix(2000))")
            for name in truth.keys {
                let want = truth[name]! / truthTotal
                let got = profiled[name]! / max(profiledTotal, 1)
                #expect(abs(got - want) < 0.08, "\(name): profile share \(got), measured share \(want); profile \(profiled), truth \(truth) over the profile's \(decoded.durationNanos) ns; sampler at the end: \(timeline.samplerState()); profile comments:\n\(comments)\nlargest samples naming no burner (of \(unmatched.reduce(0) { $0 + $1.ns }) ns):\n\(unmatched.sorted { $0.ns > $1.ns }.prefix(8).map { "\($0.ns) ns: \($0.frames)" }.joined(separator: "\n"))")
            }
        }

        @Test("the profile decodes as Go's CPU profile shape, with mappings and names")
        func profileShape() throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let workload = MeasuredWorkload()
            workload.start()
            let response: StrictResponse
            do {
                defer { workload.stop() }
                response = try TestHTTP.request(port: server.port!, target: "/debug/pprof/profile?seconds=1")
            }
            #expect(response.status == 200)
            #expect(response.header("Content-Type") == "application/octet-stream")
            #expect(response.header("Content-Disposition") == "attachment; filename=\"profile\"")
            #expect(response.body.starts(with: [0x1f, 0x8b]))
            let p = try DecodedProfile(gzipped: response.body)
            #expect(p.sampleTypes.map { "\(p.string($0.type))/\(p.string($0.unit))" } == ["samples/count", "cpu/nanoseconds"])
            #expect(p.string(p.periodType.type) == "cpu" && p.string(p.periodType.unit) == "nanoseconds")
            #expect(p.period == 10_000_000)
            #expect(p.timeNanos > 0 && p.durationNanos >= 900_000_000)
            #expect(p.mappings.first.map { p.string($0.filename) } == (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")))
            #expect(p.mappings.enumerated().allSatisfy { $0.element.id == UInt64($0.offset + 1) })
            #expect(p.locations.enumerated().allSatisfy { $0.element.id == UInt64($0.offset + 1) })
            #expect(p.functions.enumerated().allSatisfy { $0.element.id == UInt64($0.offset + 1) })
            // cpu/nanoseconds is whole periods, at least one per sample (more where the timer overran).
            #expect(p.samples.allSatisfy { $0.values.count == 2 && $0.values[1] >= $0.values[0] * 10_000_000 && $0.values[1] % 10_000_000 == 0 })
            let main = p.mappings[0]
            #expect(main.hasFunctions)
            #expect(!p.string(main.buildID).isEmpty)
            let burner = p.functions.first { p.string($0.name).contains("spinAlpha") }
            #expect(burner != nil)
            if let burner {
                #expect(p.string(burner.systemName).hasPrefix("$s"), "system_name keeps the mangled symbol")
            }
            #expect(p.comments.contains { p.string($0).contains("dropped_samples=") })
        }

        @Test("two overlapping CPU profile requests both succeed from one sampling session")
        func concurrentRequestsShareOneSession() throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let workload = MeasuredWorkload()
            workload.start()
            defer { workload.stop() }
            let port = server.port!
            let results = Locked<[StrictResponse?]>([])
            let group = DispatchGroup()
            for seconds in [2, 1] {
                group.enter()
                DispatchQueue.global().async {
                    let r = try? TestHTTP.request(port: port, target: "/debug/pprof/profile?seconds=\(seconds)")
                    results.withLock { $0.append(r) }
                    group.leave()
                }
            }
            #expect(group.wait(timeout: .now() + 60) == .success)
            let responses = results.value
            #expect(responses.count == 2)
            for r in responses {
                #expect(r?.status == 200)
                let p = try DecodedProfile(gzipped: r?.body ?? [])
                #expect(!p.samples.isEmpty)
            }
        }

        @Test("a client that disconnects ends its profile early and sampling stops")
        func disconnectEndsProfile() throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let fd = try TestHTTP.connect(port: server.port!)
            let request = Array("GET /debug/pprof/profile?seconds=60 HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            // Wait until sampling has started, then hang up.
            var stats = cpprof_cpu_stats_snapshot()
            for _ in 0..<100 where stats.mode == 0 { usleep(20_000); stats = cpprof_cpu_stats_snapshot() }
            #expect(stats.mode != 0, "sampling never started")
            close(fd)
            for _ in 0..<100 where stats.mode != 0 { usleep(50_000); stats = cpprof_cpu_stats_snapshot() }
            #expect(stats.mode == 0, "sampling still running 5 s after the only client left")
            #expect(stats.timers == 0)
        }
    }
}

import CPprof

private func cpprof_cpu_stats_snapshot() -> cpprof_cpu_stats {
    var s = cpprof_cpu_stats()
    cpprof_cpu_get_stats(&s)
    return s
}

/// The workload's ground truth over time: its per-burner CPU totals every
/// millisecond, stamped with the wall clock profiles use for `time_nanos`.
private final class WorkloadTimeline: @unchecked Sendable {
    private let lock = NSLock()
    private var points: [(wallNanoseconds: Int64, totals: [String: Double])] = []
    private var stopped = false
    private var stateAtStop = ""
    private let done = DispatchSemaphore(value: 0)
    private let started = DispatchSemaphore(value: 0)

    /// Returns once the first point is recorded: a profile requested after
    /// that starts within the recording (on a loaded machine the thread's
    /// first turn came after the profile had started).
    init(_ workload: MeasuredWorkload) {
        Thread {
            let deadline = Date().addingTimeInterval(60)
            var first = true
            while Date() < deadline {
                let now = Self.wallNanoseconds(), totals = workload.totals()
                let stop = self.lock.withLock {
                    self.points.append((now, totals))
                    return self.stopped
                }
                if first { self.started.signal(); first = false }
                if stop { break }
                usleep(1_000)
            }
            let s = cpprof_cpu_stats_snapshot()
            self.lock.withLock {
                self.stateAtStop = "samples=\(s.samples) dropped=\(s.dropped_ring_full) leaf_only=\(s.stack_unbounded) timer_errors=\(s.timer_errors) without_timer=\(s.threads_without_timer) foreign=\(s.foreign_signals) mode=\(s.mode)"
            }
            self.done.signal()
        }.start()
        _ = started.wait(timeout: .now() + 60)
    }

    private static func wallNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Records one last point and ends the recording.
    func stop() {
        lock.withLock { stopped = true }
        _ = done.wait(timeout: .now() + 60)
    }

    /// The sampler's counters when the recording ended, for a failure's message.
    func samplerState() -> String { lock.withLock { stateAtStop } }

    /// What each burner got between two wall-clock instants, from the
    /// points nearest them; [:] if the recording does not cover them.
    func change(from start: Int64, to end: Int64) -> [String: Double] {
        lock.withLock {
            guard let first = points.first, let last = points.last,
                  first.wallNanoseconds <= start, end <= last.wallNanoseconds else { return [:] }
            func nearest(_ t: Int64) -> [String: Double] {
                points.min { abs($0.wallNanoseconds - t) < abs($1.wallNanoseconds - t) }?.totals ?? [:]
            }
            return nearest(end).merging(nearest(start)) { $0 - $1 }
        }
    }
}
