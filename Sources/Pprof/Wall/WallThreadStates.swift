internal import CPprof

// A wall-clock profile's per-thread bookkeeping: which stack each thread was
// last seen in, how many samples each of its stacks got, and, at the end, its
// window's wall time shared among those stacks. Used by `WallProfiler`'s tick loop.

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
struct ThreadStates {
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
