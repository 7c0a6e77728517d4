internal import CPprof
import Glibc
import Synchronization

enum CPUProfilerError: Error, Equatable {
    /// The kernel refused the timers or the signal handler (errno).
    case startFailed(Int32)
}

/// Runs CPU sampling sessions. Requests that overlap share one sampling
/// session: each subscriber gets the samples taken while it was subscribed,
/// and the timers run only while at least one subscriber is waiting.
final class CPUProfiler: Sendable {
    static let shared = CPUProfiler()

    private struct State {
        var subscribers: [Int: CPUProfile] = [:]
        var statsAtJoin: [Int: cpprof_cpu_stats] = [:]
        var asyncStatsAtJoin: [Int: cpprof_async_stats] = [:]
        var nextID = 0
        var sessionActive = false
        var collectorRunning = false
        var periodNanoseconds: Int64 = 10_000_000
        var lastThreadSync: Int64 = 0
    }
    private let state = Mutex(State())

    /// How often the collector empties the handler's ring (4096 cells: at
    /// 100 Hz that is room for ~400 threads busy at once) and gives new
    /// threads their timers. Each wake-up costs CPU; this keeps them at 10/s.
    private static let drainIntervalNanoseconds: Int64 = 100_000_000
    private static let threadSyncIntervalNanoseconds: Int64 = 100_000_000
    /// How often a waiting request checks that its client is still there.
    private static let cancellationPollNanoseconds: Int64 = 250_000_000
    private static let drainBatch = 256
    /// Drained samples land here first; used only under the state lock.
    nonisolated(unsafe) private static let drainBuffer = UnsafeMutablePointer<cpprof_sample>.allocate(capacity: drainBatch)

    /// Samples the whole process for `seconds`, or until `isCancelled`
    /// returns true, at `hz` samples per CPU-second per thread.
    func profile(seconds: Int64, hz: Int, isCancelled: () -> Bool) throws(CPUProfilerError) -> CPUProfile {
        let startMono = Clock.monotonicNanoseconds()
        let id = try join(hz: hz)
        let deadline = startMono &+ seconds.multipliedReportingOverflow(by: 1_000_000_000).partialValue
        while true {
            let now = Clock.monotonicNanoseconds()
            if now >= deadline || isCancelled() { break }
            Clock.sleep(nanoseconds: min(deadline - now, Self.cancellationPollNanoseconds))
        }
        var profile = leave(id)
        profile.durationNanoseconds = Clock.monotonicNanoseconds() - startMono
        return profile
    }

    private func join(hz: Int) throws(CPUProfilerError) -> Int {
        let result: Result<Int, CPUProfilerError> = state.withLock { s in
            if !s.sessionActive {
                AsyncStacks.prepare()
                let period = Int64(1_000_000_000 / max(1, min(hz, 1000)))
                let rc = cpprof_cpu_start(period)
                if rc != 0 { return .failure(.startFailed(rc)) }
                s.sessionActive = true
                s.periodNanoseconds = period
                s.lastThreadSync = Clock.monotonicNanoseconds()
            }
            let id = s.nextID
            s.nextID += 1
            var profile = CPUProfile()
            profile.startWallNanoseconds = Clock.wallNanoseconds()
            profile.periodNanoseconds = s.periodNanoseconds
            s.subscribers[id] = profile
            var stats = cpprof_cpu_stats()
            cpprof_cpu_get_stats(&stats)
            s.statsAtJoin[id] = stats
            s.asyncStatsAtJoin[id] = AsyncStacks.stats()
            if !s.collectorRunning {
                s.collectorRunning = true
                if case .failure = PThread.spawn(name: "pprof-cpu", joinable: false, { CPUProfiler.shared.collect() }) {
                    s.collectorRunning = false // the waiting request still drains on leave
                }
            }
            return .success(id)
        }
        return try result.get()
    }

    private func leave(_ id: Int) -> CPUProfile {
        state.withLock { s in
            Self.drain(into: &s)
            var profile = s.subscribers.removeValue(forKey: id) ?? CPUProfile()
            var now = cpprof_cpu_stats()
            cpprof_cpu_get_stats(&now)
            if let then = s.statsAtJoin.removeValue(forKey: id) {
                profile.droppedSamples = now.dropped_ring_full &- then.dropped_ring_full
                profile.leafOnlySamples = now.stack_unbounded &- then.stack_unbounded
            }
            if let then = s.asyncStatsAtJoin.removeValue(forKey: id) {
                profile.asyncComment = AsyncStacks.comment(from: then, to: AsyncStacks.stats())
            }
            profile.perThreadTimers = now.mode != Int32(CPPROF_CPU_PROCESS_TIMER.rawValue)
            profile.threadsWithoutTimer = now.threads_without_timer
            profile.handlerLost = now.handler_lost != 0
            if s.subscribers.isEmpty {
                cpprof_cpu_stop()
                s.sessionActive = false
                Self.drain(into: &s) // discard stragglers
            }
            return profile
        }
    }

    /// The collector thread: drains the ring and keeps timers in step with
    /// the threads that come and go, until the last subscriber leaves.
    private func collect() {
        while true {
            Clock.sleep(nanoseconds: Self.drainIntervalNanoseconds)
            let keepGoing: Bool = state.withLock { s in
                guard s.sessionActive else {
                    s.collectorRunning = false
                    return false
                }
                Self.drain(into: &s)
                // Contexts in memory mapped since the last snapshot cut chains: take a new one.
                AsyncStacks.refreshSnapshotIfCut()
                let now = Clock.monotonicNanoseconds()
                if now - s.lastThreadSync >= Self.threadSyncIntervalNanoseconds {
                    s.lastThreadSync = now
                    _ = cpprof_cpu_sync_threads()
                }
                return true
            }
            if !keepGoing { return }
        }
    }

    private static func drain(into s: inout State) {
        let buffer = drainBuffer
        // A copy of the ids: iterating `subscribers.keys` while mutating the
        // dictionary would copy it (and every profile in it) per sample.
        let ids = Array(s.subscribers.keys)
        while true {
            let n = cpprof_cpu_drain(buffer, drainBatch)
            if n == 0 { break }
            for i in 0..<n {
                let stack = Self.stack(of: &buffer[i])
                let weight = Int64(buffer[i].weight)
                for id in ids { s.subscribers[id]?.add(stack: stack, weight: weight) }
            }
            if n < drainBatch { break }
        }
    }

    /// Leaf first; callers' return addresses minus one so that they point
    /// into the call instruction, as pprof expects.
    private static func stack(of sample: inout cpprof_sample) -> [UInt64] {
        let depth = Int(sample.depth)
        return withUnsafeBytes(of: &sample.pcs) { raw in
            let pcs = raw.bindMemory(to: UInt64.self)
            var out = [UInt64]()
            out.reserveCapacity(depth)
            for i in 0..<depth { out.append(i == 0 ? pcs[i] : pcs[i] &- 1) }
            return out
        }
    }
}
