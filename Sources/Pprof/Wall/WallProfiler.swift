internal import CPprof

/// Wall-clock sampling for `/debug/fgprof`: every thread's stack, on-CPU and
/// off-CPU alike, about 99 times a second.
///
/// Each tick asks the C dumper (`cpprof_threads_sample`) for a set of
/// threads. It reads nothing for a thread whose CPU clock has not moved since
/// its last capture (its stack cannot have changed), reads a blocked thread's
/// stack from /proc without signalling it, and signals only threads that are
/// on a CPU. A thread's `wall/nanoseconds` add up to the window it was
/// seen in, shared among its stacks by their samples (see `ThreadStates`).
///
/// Above `maxThreadsPerTick` threads, each tick samples the next
/// `maxThreadsPerTick` of the list in turn (round robin): every thread is
/// sampled as often as the others, less often than 99 Hz; its wall time is
/// still the whole window, shared among its stacks by their samples.
enum WallProfiler {
    static let hz: Int64 = 99
    static let periodNanoseconds: Int64 = 1_000_000_000 / hz
    /// Threads whose stacks one tick captures at most.
    static let maxThreadsPerTick = 256
    /// The thread list is refreshed from /proc/self/task every this many ticks.
    static let relistEveryTicks = 10
    /// The caller's `isCancelled` is asked every this many ticks.
    static let cancelCheckEveryTicks = 10
    /// How long a tick waits for a signalled (running) thread to answer.
    static let answerDeadlineMilliseconds: Int32 = 20
    /// A tick that starts this much after its time is late: the sampler
    /// waited for a CPU. Late ticks are counted, and said in the comments,
    /// because on a saturated machine the sampler gets a CPU mostly when
    /// another thread gives one up (blocks): its instants are not independent
    /// of the threads it samples, and a thread's split between its running
    /// and its blocked stacks is less exact (Docs/Design.md, "Wall-clock profiles").
    static let lateTickNanoseconds: Int64 = 2_000_000
    /// Above this share of late ticks a profile says the machine was saturated.
    static let lateTicksWorthSaying = 0.05

    /// What a profile saw, for its comments.
    struct Counters: Sendable {
        var ticks = 0
        /// Ticks that started more than `lateTickNanoseconds` after their time.
        var lateTicks = 0
        var samples = 0
        var readFromProc = 0
        var signalled = 0
        var unchanged = 0
        var completed = 0
        /// Blocked threads whose previous unwind provably still held (not unwound again).
        var reused = 0
        var withoutStack = 0
        var threadsMax = 0
        /// Some tick unwound stacks by frame pointers alone (no libunwind).
        var withoutLibunwind = false
    }

    /// Samples every thread but the calling one for `seconds`, or until
    /// `isCancelled` returns true.
    static func profile(seconds: Int64, isCancelled: () -> Bool) -> (data: ProfileData, counters: Counters) {
        var data = ProfileData(
            sampleTypes: [ValueType(type: "samples", unit: "count"), ValueType(type: "wall", unit: "nanoseconds")],
            periodType: ValueType(type: "wall", unit: "nanoseconds"),
            period: periodNanoseconds)
        data.defaultSampleType = "wall"
        data.timeNanos = Clock.wallNanoseconds()
        let start = Clock.monotonicNanoseconds()
        let end = start &+ seconds.multipliedReportingOverflow(by: 1_000_000_000).partialValue
        let me = cpprof_gettid()
        // The /proc files read every tick stay open until the profile ends.
        cpprof_threads_sampling(1)
        defer { cpprof_threads_sampling(0) }
        var threads = ThreadStates(start: start)
        var counters = Counters()
        var tids: [Int32] = []
        var cursor = 0
        var nextTick = start
        while true {
            let now = Clock.monotonicNanoseconds()
            if now >= end { break }
            // A poll and a peek at the client's socket: every tick, they were
            // 1 % of the sampler's CPU; a tenth of a second is soon enough.
            if nextTick <= now && counters.ticks % cancelCheckEveryTicks == 0 && isCancelled() { break }
            if nextTick > now {
                Clock.sleep(nanoseconds: min(nextTick - now, end - now))
                continue
            }
            if now - nextTick > lateTickNanoseconds { counters.lateTicks += 1 }
            nextTick = max(nextTick &+ periodNanoseconds, now)
            if counters.ticks % relistEveryTicks == 0 {
                tids = liveThreadIDs().filter { $0 != me }
                if counters.ticks == 0 { threads.presentAtStart = Set(tids) }
                counters.threadsMax = max(counters.threadsMax, tids.count)
            }
            counters.ticks += 1
            guard !tids.isEmpty else { continue }
            let subset: ArraySlice<Int32>
            if tids.count <= maxThreadsPerTick {
                subset = tids[...]
            } else {
                if cursor >= tids.count { cursor = 0 }
                let upper = min(cursor + maxThreadsPerTick, tids.count)
                subset = tids[cursor..<upper]
                cursor = upper
            }
            let exited = sample(subset, into: &threads, data: &data, counters: &counters)
            if !exited.isEmpty { tids.removeAll { exited.contains($0) } }
        }
        let stopped = Clock.monotonicNanoseconds()
        threads.flushAll(into: &data, end: stopped)
        data.durationNanos = stopped - start
        data.comments = [
            "swift-pprof: wall-clock profile at \(hz) Hz per thread: ticks=\(counters.ticks) late_ticks=\(counters.lateTicks) threads_max=\(counters.threadsMax) samples=\(counters.samples)",
            "swift-pprof: captures: unchanged since the last one=\(counters.unchanged) read from /proc while blocked=\(counters.readFromProc) (beyond their first copy=\(counters.completed), their last unwind reused=\(counters.reused)) signalled on a CPU=\(counters.signalled) without a stack=\(counters.withoutStack)",
        ]
        if counters.ticks > 0 && Double(counters.lateTicks) > lateTicksWorthSaying * Double(counters.ticks) {
            data.comments.append("swift-pprof: \(counters.lateTicks) of \(counters.ticks) ticks started over \(lateTickNanoseconds / 1_000_000) ms late (the sampler waited for a CPU): on a saturated machine its instants follow the scheduler, and each thread's split between running and blocked stacks is less exact")
        }
        if counters.withoutLibunwind { data.comments.append(ThreadDumper.withoutLibunwindComment) }
        if counters.threadsMax > maxThreadsPerTick {
            data.comments.append("swift-pprof: more than \(maxThreadsPerTick) threads: each tick sampled \(maxThreadsPerTick) of them in turn; each thread's wall time is its window, shared by its samples")
        }
        return (data, counters)
    }

    /// One tick over `tids`. Returns the threads that have exited.
    private static func sample(_ tids: ArraySlice<Int32>, into threads: inout ThreadStates, data: inout ProfileData,
                               counters: inout Counters) -> Set<Int32> {
        var infos: UnsafeMutablePointer<cpprof_thread_info>?
        var count = 0
        var stats = cpprof_thread_dump_stats()
        let err = tids.withUnsafeBufferPointer { buffer in
            cpprof_threads_sample(buffer.baseAddress, buffer.count, answerDeadlineMilliseconds, &infos, &count, &stats)
        }
        guard err == 0, let infos else { return [] }
        defer { cpprof_threads_free(infos) }
        let now = Clock.monotonicNanoseconds()
        counters.readFromProc += Int(stats.read_blocked)
        counters.signalled += Int(stats.signalled)
        counters.unchanged += Int(stats.unchanged)
        counters.completed += Int(stats.completed)
        counters.reused += Int(stats.reused)
        if ThreadDumper.unwoundWithoutLibunwind(stats) { counters.withoutLibunwind = true }
        var exited = Set<Int32>()
        for i in 0..<count {
            let tid = infos[i].tid
            let status = cpprof_thread_status(rawValue: UInt32(bitPattern: infos[i].status))
            if status == CPPROF_THREAD_EXITED {
                exited.insert(tid)
                threads.flush(tid, into: &data)
                continue
            }
            let hasStack = infos[i].depth > 0 &&
                (status == CPPROF_THREAD_ANSWERED || status == CPPROF_THREAD_READ_BLOCKED)
            if !hasStack {
                counters.withoutStack += 1
                threads.missing(&infos[i], at: now)
                continue
            }
            counters.samples += 1
            threads.record(&infos[i], unchanged: infos[i].unchanged != 0, at: now, into: &data)
        }
        return exited
    }
}
