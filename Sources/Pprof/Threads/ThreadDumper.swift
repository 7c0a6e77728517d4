internal import CPprof

/// One thread of the process as a thread dump saw it.
struct ThreadSnapshot: Sendable {
    /// Why a thread has, or lacks, a stack.
    enum Status: Sendable, Equatable {
        case answered       // its signal handler copied its stack
        case readWhileBlocked // blocked in the kernel: its stack was read from /proc, no signal sent
        case dumpingThread  // the thread that ran the dump, captured directly
        case timedOut       // signalled, no answer before the deadline (stuck, e.g. "disk sleep")
        case signalBlocked  // it blocks the dump signal
        case exited         // gone before or while being signalled
        case signalFailed   // the kernel refused to queue the signal
        case tooManyThreads // beyond the dump's slot capacity
    }

    var tid: Int32
    var name: String
    /// The kernel's word for the scheduler state: "running", "sleeping", "disk sleep", ...
    var state: String
    /// User + system CPU time; -1 if unknown.
    var cpuNanoseconds: Int64
    var answered: Bool
    /// pcs[0] = interrupted PC, then return addresses; [] if not answered.
    var stack: [UInt64]
    var status: Status
    /// The stack was cut: depth limit, or deeper than the copied bytes.
    var truncated: Bool
}

/// Collects thread dumps and thread-creation stacks (see cpprof_threads.h).
enum ThreadDumper {
    /// Dumps every thread of the process. Dumps run one at a time; a
    /// concurrent caller waits for the running one.
    static func dump(deadlineMilliseconds: Int = 200) -> [ThreadSnapshot] {
        dumpWithStats(deadlineMilliseconds: deadlineMilliseconds).threads
    }

    /// The dump unwound stacks without libunwind's DWARF unwinder: built
    /// without libunwind's headers, or libunwind-x86_64.so.8 not found at run
    /// time. Frame pointers alone skip the frames of code built without
    /// them (Debian's glibc: `pthread_cond_wait` and its caller, say).
    static func unwoundWithoutLibunwind(_ stats: cpprof_thread_dump_stats) -> Bool {
        stats.libunwind == 0 && stats.read_blocked &+ stats.signalled > 0
    }

    /// What a profile says when `unwoundWithoutLibunwind`.
    static let withoutLibunwindComment = "swift-pprof: libunwind unavailable (built without libunwind-dev, or libunwind-x86_64.so.8 not found): stacks were walked by frame pointers alone, and frames of code built without them (glibc) may be missing"

    /// Same as `dump`, with what the dump cost. `stats.threads == 0` if the dump failed.
    static func dumpWithStats(deadlineMilliseconds: Int = 200) -> (threads: [ThreadSnapshot], stats: cpprof_thread_dump_stats) {
        var infos: UnsafeMutablePointer<cpprof_thread_info>?
        var count = 0
        var stats = cpprof_thread_dump_stats()
        AsyncStacks.prepare()
        let err = cpprof_threads_dump(Int32(clamping: deadlineMilliseconds), &infos, &count, &stats)
        guard err == 0, let infos else { return ([], cpprof_thread_dump_stats()) }
        defer { cpprof_threads_free(infos) }
        var result: [ThreadSnapshot] = []
        result.reserveCapacity(count)
        for i in 0..<count {
            result.append(snapshot(of: &infos[i]))
        }
        return (result, stats)
    }

    /// Creation stacks of the live threads started through pthread_create
    /// since the process began (pcs[0] = return address in the creator).
    static func threadCreationStacks() -> [(tid: Int32, stack: [UInt64])] {
        var live = cpprof_threadcreate_snapshot(nil, 0, nil)
        while true {
            let capacity = live + 64
            let records = UnsafeMutablePointer<cpprof_threadcreate_record>.allocate(capacity: capacity)
            defer { records.deallocate() }
            live = cpprof_threadcreate_snapshot(records, capacity, nil)
            if live > capacity { continue } // threads appeared meanwhile
            var result: [(tid: Int32, stack: [UInt64])] = []
            result.reserveCapacity(live)
            for i in 0..<live {
                let depth = Int(records[i].depth)
                let stack = withUnsafeBytes(of: &records[i].pcs) { raw in
                    Array(raw.bindMemory(to: UInt64.self).prefix(depth))
                }
                result.append((tid: records[i].tid, stack: stack))
            }
            return result
        }
    }

    private static func snapshot(of info: inout cpprof_thread_info) -> ThreadSnapshot {
        let name = withUnsafeBytes(of: &info.name) { raw -> String in
            let bytes = raw.prefix(while: { $0 != 0 })
            return String(decoding: bytes, as: UTF8.self)
        }
        let depth = Int(info.depth)
        let stack = withUnsafeBytes(of: &info.pcs) { raw in
            Array(raw.bindMemory(to: UInt64.self).prefix(depth))
        }
        let status: ThreadSnapshot.Status
        switch cpprof_thread_status(rawValue: UInt32(bitPattern: info.status)) {
        case CPPROF_THREAD_ANSWERED: status = .answered
        case CPPROF_THREAD_SELF: status = .dumpingThread
        case CPPROF_THREAD_BLOCKED: status = .signalBlocked
        case CPPROF_THREAD_EXITED: status = .exited
        case CPPROF_THREAD_SEND_FAILED: status = .signalFailed
        case CPPROF_THREAD_NO_SLOT: status = .tooManyThreads
        case CPPROF_THREAD_READ_BLOCKED: status = .readWhileBlocked
        default: status = .timedOut
        }
        let answered = status == .answered || status == .dumpingThread || status == .readWhileBlocked
        return ThreadSnapshot(
            tid: info.tid,
            name: name,
            state: String(cString: cpprof_thread_state_name(info.state)),
            cpuNanoseconds: info.cpu_ns,
            answered: answered,
            stack: answered ? stack : [],
            status: status,
            truncated: info.truncated != 0
        )
    }
}
