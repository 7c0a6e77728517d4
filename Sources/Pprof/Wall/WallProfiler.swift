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
    /// How long a tick waits for a signalled (running) thread to answer.
    static let answerDeadlineMilliseconds: Int32 = 20

    /// What a profile saw, for its comments.
    struct Counters: Sendable {
        var ticks = 0
        var samples = 0
        var readFromProc = 0
        var signalled = 0
        var unchanged = 0
        var completed = 0
        /// Blocked threads whose previous unwind provably still held (not unwound again).
        var reused = 0
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
            if now >= end || isCancelled() { break }
            if nextTick > now {
                Clock.sleep(nanoseconds: min(nextTick - now, end - now))
                continue
            }
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
            let exited = sample(Array(subset), into: &threads, data: &data, counters: &counters)
            if !exited.isEmpty { tids.removeAll { exited.contains($0) } }
        }
        let stopped = Clock.monotonicNanoseconds()
        threads.flushAll(into: &data, end: stopped)
        data.durationNanos = stopped - start
        data.comments = [
            "swift-pprof: wall-clock profile at \(hz) Hz per thread: ticks=\(counters.ticks) threads_max=\(counters.threadsMax) samples=\(counters.samples)",
            "swift-pprof: captures: unchanged since the last one=\(counters.unchanged) read from /proc while blocked=\(counters.readFromProc) (beyond their first copy=\(counters.completed), their last unwind reused=\(counters.reused)) signalled on a CPU=\(counters.signalled) without a stack=\(counters.withoutStack)",
        ]
        if counters.threadsMax > maxThreadsPerTick {
            data.comments.append("swift-pprof: more than \(maxThreadsPerTick) threads: each tick sampled \(maxThreadsPerTick) of them in turn; each thread's wall time is its window, shared by its samples")
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
        counters.completed += Int(stats.completed)
        counters.reused += Int(stats.reused)
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

/// Per thread: the stack it was last seen in and how many samples each of
/// its stacks got (counted when the stack changes, so an idle thread costs
/// no dictionary update per tick). At the end, a thread's wall time (from
/// the start, or its first sample, to its last sample) is shared among its
/// stacks in proportion to their samples.
///
/// Not each sample weighted by the time since the previous tick: ticks are
/// not independent of the threads (a thread that stops computing frees the
/// CPU the sampler was waiting for), and on a loaded 2-core machine a late
/// tick then landed in a wait and charged it the whole delay, overstating
/// waiting by 5 to 10 points for a 70/30 sleep/compute thread.
private struct ThreadStates {
    struct State {
        var key: ProfileData.Key
        /// Hash of the raw frames `key` was made from: an equal hash is the
        /// same stack, and no new key is built for it.
        var stackHash: Int
        /// `key` was captured on a CPU (signalled), not blocked.
        var onCPU: Bool
        /// The thread's CPU time when `key`'s stack was captured.
        var cpuNanoseconds: Int64
        var pending: Int64 = 0
        var firstSample: Int64
        var lastSample: Int64
        var counts: [ProfileData.Key: Int64] = [:]
    }
    let start: Int64
    /// Threads of the first listing: their time counts from the start.
    var presentAtStart: Set<Int32> = []
    var states: [Int32: State] = [:]
    /// Threads that exited: their counts wait for the end.
    var finished: [State] = []

    init(start: Int64) { self.start = start }

    mutating func record(_ info: inout cpprof_thread_info, unchanged: Bool, at now: Int64, into data: inout ProfileData) {
        let tid = info.tid
        let onCPU = info.status == Int32(CPPROF_THREAD_ANSWERED.rawValue)
        if let index = states.index(forKey: tid) {
            // Mutated in place: a copy of the state would copy its counts too.
            let sameCapture = unchanged && states.values[index].cpuNanoseconds == info.cpu_ns
            let stackHash = sameCapture ? states.values[index].stackHash : Self.stackHash(&info)
            if sameCapture || stackHash == states.values[index].stackHash {
                // The stack it was last seen in (it may have run in between).
                states.values[index].pending += 1
            } else {
                let key = Self.key(of: &info)
                states.values[index].counts[states.values[index].key, default: 0] += states.values[index].pending
                states.values[index].key = key
                states.values[index].stackHash = stackHash
                states.values[index].pending = 1
            }
            states.values[index].onCPU = onCPU
            states.values[index].cpuNanoseconds = info.cpu_ns
            states.values[index].lastSample = now
            return
        }
        // First seen: its time counts from the start, or one period back if it is new.
        let first = presentAtStart.contains(tid) ? start : now - WallProfiler.periodNanoseconds
        states[tid] = State(key: Self.key(of: &info), stackHash: Self.stackHash(&info), onCPU: onCPU,
                            cpuNanoseconds: info.cpu_ns, pending: 1, firstSample: first, lastSample: now)
    }

    /// A thread without a stack this tick: on a CPU but it did not answer in
    /// time (descheduled on a loaded machine), or it blocks the signal.
    /// Dropping these samples would drop CPU-bound time only (a 70/30
    /// sleep/compute thread lost a quarter of its compute samples at load 15
    /// on 2 cores): counted in its previous stack if that was also taken on
    /// a CPU, else in an empty stack labelled `stack=not captured`.
    mutating func missing(_ info: inout cpprof_thread_info, at now: Int64) {
        let tid = info.tid
        if let index = states.index(forKey: tid) {
            states.values[index].lastSample = now
            if states.values[index].onCPU {
                states.values[index].pending += 1
            } else {
                states.values[index].counts[Self.notCaptured(Self.threadName(&info.name)), default: 0] += 1
            }
        } else {
            let first = presentAtStart.contains(tid) ? start : now - WallProfiler.periodNanoseconds
            var state = State(key: Self.notCaptured(Self.threadName(&info.name)), stackHash: 0, onCPU: false,
                              cpuNanoseconds: -2, pending: 1, firstSample: first, lastSample: now)
            state.counts = [:]
            states[tid] = state
        }
    }

    private static func notCaptured(_ name: String) -> ProfileData.Key {
        ProfileData.Key(addresses: [], labels: [SampleLabel(key: "thread_name", string: name),
                                                SampleLabel(key: "stack", string: "not captured")])
    }

    /// A thread that exited.
    mutating func flush(_ tid: Int32, into data: inout ProfileData) {
        if let state = states.removeValue(forKey: tid) { finished.append(state) }
    }

    /// Threads still alive count until `end`; those that exited until their last sample.
    mutating func flushAll(into data: inout ProfileData, end: Int64) {
        for var state in states.values { state.lastSample = end; finished.append(state) }
        states = [:]
        for state in finished {
            var counts = state.counts
            counts[state.key, default: 0] += state.pending
            let total = counts.values.reduce(0, +)
            guard total > 0 else { continue }
            let window = Double(state.lastSample - state.firstSample)
            for (key, count) in counts where count > 0 {
                data.add(key, [count, Int64(window * Double(count) / Double(total))])
            }
        }
    }

    private static func key(of info: inout cpprof_thread_info) -> ProfileData.Key {
        let depth = Int(info.depth)
        let stack = withUnsafeBytes(of: &info.pcs) { raw in
            Array(raw.bindMemory(to: UInt64.self).prefix(depth))
        }
        return ProfileData.Key(addresses: GoroutineProfile.adjusted(stack),
                               labels: [SampleLabel(key: "thread_name", string: threadName(&info.name))])
    }

    private static func stackHash(_ info: inout cpprof_thread_info) -> Int {
        let depth = Int(info.depth)
        var hasher = Hasher()
        hasher.combine(depth)
        withUnsafeBytes(of: &info.pcs) { raw in hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: raw.prefix(depth * 8))) }
        withUnsafeBytes(of: &info.name) { raw in hasher.combine(bytes: raw) } // the name is in the key's labels
        return hasher.finalize()
    }

    private static func threadName<T>(_ name: inout T) -> String {
        withUnsafeBytes(of: &name) { raw in String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }
}
