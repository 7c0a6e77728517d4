import CPprof

/// Wall-clock sampling for `/debug/fgprof`: every thread's stack, on-CPU and
/// off-CPU alike, about 99 times a second.
///
/// Each tick asks the C dumper (`cpprof_threads_sample`) for a set of
/// threads. It reads nothing for a thread whose CPU clock has not moved since
/// its last capture (its stack cannot have changed), reads a blocked thread's
/// stack from /proc without signalling it, and signals only threads that are
/// on a CPU. A sample is worth the wall time since that thread's previous
/// sample, so the `wall/nanoseconds` of a thread add up to the window.
///
/// Above `maxThreadsPerTick` threads, each tick samples the next
/// `maxThreadsPerTick` of the list in turn (round robin): every thread is
/// sampled as often as the others, less often than 99 Hz, and each of its
/// samples is worth the longer time since its previous one.
enum WallProfiler {
    static let hz: Int64 = 99
    static let periodNanoseconds: Int64 = 1_000_000_000 / hz
    /// Threads whose stacks one tick captures at most.
    static let maxThreadsPerTick = 256
    /// The thread list is refreshed from /proc/self/task every this many ticks.
    static let relistEveryTicks = 10
    /// How long a tick waits for a signalled (running) thread to answer.
    static let answerDeadlineMilliseconds: Int32 = 20

    /// What a profile saw, for its comments.
    struct Counters: Sendable {
        var ticks = 0
        var samples = 0
        var readFromProc = 0
        var signalled = 0
        var unchanged = 0
        var withoutStack = 0
        var threadsMax = 0
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
        var threads = ThreadStates(start: start)
        var counters = Counters()
        var tids: [Int32] = []
        var cursor = 0
        var nextTick = start
        while true {
            let now = Clock.monotonicNanoseconds()
            if now >= end || isCancelled() { break }
            if nextTick > now {
                Clock.sleep(nanoseconds: min(nextTick - now, end - now))
                continue
            }
            nextTick = max(nextTick &+ periodNanoseconds, now)
            if counters.ticks % relistEveryTicks == 0 {
                tids = liveThreadIDs().filter { $0 != me }
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
            let exited = sample(Array(subset), into: &threads, data: &data, counters: &counters)
            if !exited.isEmpty { tids.removeAll { exited.contains($0) } }
        }
        threads.flushAll(into: &data)
        data.durationNanos = Clock.monotonicNanoseconds() - start
        data.comments = [
            "swift-pprof: wall-clock profile at \(hz) Hz per thread: ticks=\(counters.ticks) threads_max=\(counters.threadsMax) samples=\(counters.samples)",
            "swift-pprof: captures: unchanged since the last one=\(counters.unchanged) read from /proc while blocked=\(counters.readFromProc) signalled on a CPU=\(counters.signalled) without a stack=\(counters.withoutStack)",
        ]
        if counters.threadsMax > maxThreadsPerTick {
            data.comments.append("swift-pprof: more than \(maxThreadsPerTick) threads: each tick sampled \(maxThreadsPerTick) of them in turn; a sample is worth the time since that thread's previous one")
        }
        return (data, counters)
    }

    /// One tick over `tids`. Returns the threads that have exited.
    private static func sample(_ tids: [Int32], into threads: inout ThreadStates, data: inout ProfileData,
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
                threads.skip(tid, at: now)
                continue
            }
            counters.samples += 1
            threads.record(&infos[i], unchanged: infos[i].unchanged != 0, at: now, into: &data)
        }
        return exited
    }
}

/// Per thread: the stack it was last seen in, and the samples and wall time
/// gathered on it since, added to the profile when the stack changes (so an
/// idle thread costs no dictionary update per tick).
private struct ThreadStates {
    struct State {
        var key: ProfileData.Key
        /// The thread's CPU time when `key`'s stack was captured.
        var cpuNanoseconds: Int64
        var samples: Int64 = 0
        var nanoseconds: Int64 = 0
        var lastSample: Int64
    }
    let start: Int64
    var states: [Int32: State] = [:]

    init(start: Int64) { self.start = start }

    mutating func record(_ info: inout cpprof_thread_info, unchanged: Bool, at now: Int64, into data: inout ProfileData) {
        let tid = info.tid
        // Unchanged since the dumper's last capture, and that capture is ours.
        if unchanged, var state = states[tid], state.cpuNanoseconds == info.cpu_ns {
            state.samples += 1
            state.nanoseconds += now - state.lastSample
            state.lastSample = now
            states[tid] = state
            return
        }
        let previous = states[tid]
        if previous != nil { flush(tid, into: &data) }
        let key = Self.key(of: &info)
        // A thread first seen now: worth the time since the start (or one period if it is new).
        let since = previous?.lastSample ?? (now - start < 2 * WallProfiler.periodNanoseconds ? start : now - WallProfiler.periodNanoseconds)
        states[tid] = State(key: key, cpuNanoseconds: info.cpu_ns, samples: 1, nanoseconds: now - since, lastSample: now)
    }

    /// A thread without a stack this tick: its time until now is not counted.
    mutating func skip(_ tid: Int32, at now: Int64) {
        states[tid]?.lastSample = now
    }

    mutating func flush(_ tid: Int32, into data: inout ProfileData) {
        guard var state = states[tid], state.samples > 0 else { return }
        data.add(state.key, [state.samples, state.nanoseconds])
        state.samples = 0
        state.nanoseconds = 0
        states[tid] = state
    }

    mutating func flushAll(into data: inout ProfileData) {
        for tid in Array(states.keys) { flush(tid, into: &data) }
    }

    private static func key(of info: inout cpprof_thread_info) -> ProfileData.Key {
        let depth = Int(info.depth)
        let stack = withUnsafeBytes(of: &info.pcs) { raw in
            Array(raw.bindMemory(to: UInt64.self).prefix(depth))
        }
        let name = withUnsafeBytes(of: &info.name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return ProfileData.Key(addresses: GoroutineProfile.adjusted(stack),
                               labels: [SampleLabel(key: "thread_name", string: name)])
    }
}
