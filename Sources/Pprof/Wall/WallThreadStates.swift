internal import CPprof

// A wall-clock profile's per-thread bookkeeping: which stack each thread was
// last seen in, how many samples each of its stacks got, and, at the end, its
// window's wall time shared among those stacks. Used by `WallProfiler`'s tick loop.

/// Per thread: the stack it was last seen in and how many samples each of
/// its stacks got, apart for samples taken on a CPU (signalled, or not
/// answering in time) and samples taken blocked (read from /proc), counted
/// when the stack or its kind changes, so a thread seen in the same capture
/// as at the last tick (an idle one) costs a lookup and an increment.
///
/// At the end, a thread's wall time (its window: from the start, or its
/// first sample, to the end, or its last sample if it exited) is split in
/// two by the kernel's account, not by the ticks: the share of the window
/// it was on a CPU or waiting for one (schedstat's run time plus run-queue
/// wait, read at its first sample and at the end: two reads per thread, not
/// one per tick) goes to its on-CPU samples, the rest to its blocked ones.
/// Within each kind, time is shared among stacks by their samples.
///
/// Why not the ticks alone: sampling instants are not independent of the
/// threads. On a loaded 2-core machine the sampler gets a CPU mostly when a
/// computing thread blocks, so its ticks land in waits: a 70/30
/// sleep/compute thread's profile put 5 to 13 points more in its sleep than
/// it measured, whether each sample counted the same, the time since the
/// previous tick or the time until the next one (Docs/Design.md).
///
/// Kept as it was (samples alone share the window) when one kind has no
/// sample (a thread with CPU time but no on-CPU sample, say), when schedstat
/// cannot be read (CONFIG_SCHED_INFO off), and for threads that exited
/// before the end (nothing to read at their end).
struct ThreadStates {
    struct State {
        var key: ProfileData.Key
        /// Hash of the raw frames `key` was made from: an equal hash is the
        /// same stack, and no new key is built for it.
        var stackHash: Int
        /// `key` was captured on a CPU (signalled), not blocked: the kind
        /// of its `pending` samples.
        var onCPU: Bool
        /// The thread's CPU time when `key`'s stack was captured.
        var cpuNanoseconds: Int64
        var pending: Int64 = 0
        var firstSample: Int64
        var lastSample: Int64
        /// Samples per stack taken on a CPU, and blocked.
        var onCPUCounts: [ProfileData.Key: Int64] = [:]
        var blockedCounts: [ProfileData.Key: Int64] = [:]
        /// Its schedstat at its first sample.
        var schedAtFirst: ThreadSchedStat?

        init(tid: Int32, key: ProfileData.Key, stackHash: Int, onCPU: Bool, cpuNanoseconds: Int64,
             firstSample: Int64, lastSample: Int64) {
            self.key = key
            self.stackHash = stackHash
            self.onCPU = onCPU
            self.cpuNanoseconds = cpuNanoseconds
            self.pending = 1
            self.firstSample = firstSample
            self.lastSample = lastSample
            self.schedAtFirst = ThreadSchedStat.read(tid)
        }

        /// Counts `pending` in `key`, under its kind.
        mutating func settlePending() {
            guard pending > 0 else { return }
            if onCPU { onCPUCounts[key, default: 0] += pending } else { blockedCounts[key, default: 0] += pending }
            pending = 0
        }
    }
    let start: Int64
    /// Threads of the first listing: their time counts from the start.
    var presentAtStart: Set<Int32> = []
    /// Per live thread, its slot in `states`. A tick touches each listed
    /// thread once: a lookup here and fields of an array element mutated in
    /// place. (A dictionary of states, read through `Dictionary.Values`,
    /// copied the whole state, retaining its key and counts, on every read:
    /// a tenth of the sampler's CPU in the `wall-cost` benchmark.)
    private var slots: [Int32: Int] = [:]
    private var states: [State] = []
    /// Slots of threads that exited, for new threads.
    private var freeSlots: [Int] = []
    /// Threads that exited: their counts wait for the end.
    var finished: [State] = []

    init(start: Int64) { self.start = start }

    mutating func record(_ info: inout cpprof_thread_info, unchanged: Bool, at now: Int64, into data: inout ProfileData) {
        let tid = info.tid
        let onCPU = info.status == Int32(CPPROF_THREAD_ANSWERED.rawValue)
        guard let slot = slots[tid] else {
            add(State(tid: tid, key: Self.key(of: &info), stackHash: Self.stackHash(&info), onCPU: onCPU,
                      cpuNanoseconds: info.cpu_ns, firstSample: firstSample(tid, now), lastSample: now), for: tid)
            return
        }
        // The capture it was last seen in (an idle thread, most of a tick's
        // threads): one more sample of the same stack, nothing hashed.
        if unchanged && states[slot].cpuNanoseconds == info.cpu_ns && states[slot].onCPU == onCPU {
            states[slot].pending += 1
            states[slot].lastSample = now
            return
        }
        let sameCapture = unchanged && states[slot].cpuNanoseconds == info.cpu_ns
        let stackHash = sameCapture ? states[slot].stackHash : Self.stackHash(&info)
        if sameCapture || stackHash == states[slot].stackHash {
            // The stack it was last seen in (it may have run in between).
            if states[slot].onCPU != onCPU {
                states[slot].settlePending()
                states[slot].onCPU = onCPU
            }
            states[slot].pending += 1
        } else {
            states[slot].settlePending()
            states[slot].key = Self.key(of: &info)
            states[slot].stackHash = stackHash
            states[slot].onCPU = onCPU
            states[slot].pending = 1
        }
        states[slot].cpuNanoseconds = info.cpu_ns
        states[slot].lastSample = now
    }

    private mutating func add(_ state: State, for tid: Int32) {
        if let slot = freeSlots.popLast() {
            states[slot] = state
            slots[tid] = slot
        } else {
            slots[tid] = states.count
            states.append(state)
        }
    }

    /// First seen: its time counts from the start, or one period back if it is new.
    private func firstSample(_ tid: Int32, _ now: Int64) -> Int64 {
        presentAtStart.contains(tid) ? start : now - WallProfiler.periodNanoseconds
    }

    /// A thread without a stack this tick: on a CPU but it did not answer in
    /// time (descheduled on a loaded machine), or it blocks the signal.
    /// Dropping these samples would drop CPU-bound time only (a 70/30
    /// sleep/compute thread lost a quarter of its compute samples at load 15
    /// on 2 cores): an on-CPU sample, counted in its previous stack if that
    /// was also taken on a CPU, else in an empty stack labelled
    /// `stack=not captured`.
    mutating func missing(_ info: inout cpprof_thread_info, at now: Int64) {
        let tid = info.tid
        if let slot = slots[tid] {
            states[slot].lastSample = now
            if states[slot].onCPU {
                states[slot].pending += 1
            } else {
                states[slot].onCPUCounts[Self.notCaptured(Self.threadName(&info.name)), default: 0] += 1
            }
        } else {
            add(State(tid: tid, key: Self.notCaptured(Self.threadName(&info.name)), stackHash: 0, onCPU: true,
                      cpuNanoseconds: -2, firstSample: firstSample(tid, now), lastSample: now), for: tid)
        }
    }

    private static func notCaptured(_ name: String) -> ProfileData.Key {
        ProfileData.Key(addresses: [], labels: [SampleLabel(key: "thread_name", string: name),
                                                SampleLabel(key: "stack", string: "not captured")])
    }

    /// A thread that exited.
    mutating func flush(_ tid: Int32, into data: inout ProfileData) {
        guard let slot = slots.removeValue(forKey: tid) else { return }
        finished.append(states[slot])
        // Its counts are in `finished`: the slot keeps none of them alive.
        states[slot].onCPUCounts = [:]
        states[slot].blockedCounts = [:]
        freeSlots.append(slot)
    }

    /// Threads still alive count until `end`; those that exited until their last sample.
    mutating func flushAll(into data: inout ProfileData, end: Int64) {
        for (tid, slot) in slots {
            var state = states[slot]
            state.lastSample = end
            var runnable: Double?
            if let first = state.schedAtFirst, let last = ThreadSchedStat.read(tid) {
                runnable = first.runnableFraction(until: last)
            }
            Self.add(state, runnableFraction: runnable, into: &data)
        }
        slots = [:]
        states = []
        freeSlots = []
        for state in finished { Self.add(state, runnableFraction: nil, into: &data) }
        finished = []
    }

    /// One thread's samples, with its window shared as the type's comment says.
    static func add(_ state: State, runnableFraction: Double?, into data: inout ProfileData) {
        var state = state
        state.settlePending()
        let onCPU = state.onCPUCounts.values.reduce(0, +), blocked = state.blockedCounts.values.reduce(0, +)
        guard onCPU + blocked > 0 else { return }
        let window = state.lastSample - state.firstSample
        let onCPUTime: Int64
        if let runnableFraction, onCPU > 0, blocked > 0 {
            onCPUTime = Int64((Double(window) * runnableFraction).rounded())
        } else {
            onCPUTime = Int64(Double(window) * Double(onCPU) / Double(onCPU + blocked))
        }
        share(onCPUTime, among: state.onCPUCounts, into: &data)
        share(window - onCPUTime, among: state.blockedCounts, into: &data)
    }

    /// `time` shared among stacks in proportion to their samples; the parts
    /// add up to `time` exactly.
    private static func share(_ time: Int64, among counts: [ProfileData.Key: Int64], into data: inout ProfileData) {
        let total = counts.values.reduce(0, +)
        guard total > 0 else { return }
        var samplesSoFar: Int64 = 0, timeSoFar: Int64 = 0
        for (key, count) in counts where count > 0 {
            samplesSoFar += count
            let upTo = samplesSoFar == total ? time : Int64(Double(time) * Double(samplesSoFar) / Double(total))
            data.add(key, [count, upTo - timeSoFar])
            timeSoFar = upTo
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
