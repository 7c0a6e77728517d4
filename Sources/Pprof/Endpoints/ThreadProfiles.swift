import Glibc

/// `/debug/pprof/goroutine`: in a Swift process the unit Go calls a goroutine
/// is an OS thread. Every thread's stack at one moment, identical stacks
/// merged with their count (`debug=0` and `debug=1`), or one block per thread
/// with its name, id, state and CPU time (`debug=2`).
struct GoroutineProfile: NamedProfile {
    let name = "goroutine"
    let description = "Stack traces of all current threads (goroutines, in Go's words). Use debug=2 as a query parameter to export one block per thread, with its name, state and CPU time."

    /// How long a dump waits for threads to answer.
    static let deadlineMilliseconds = 200

    /// Threads already captured, rendered by `debug=2` instead of a new
    /// dump: the symbol read-ahead's rehearsal of a first request, which
    /// must not take a dump (and hold the dump lock) at its low priority.
    /// Nil for the served profile.
    let captured: [ThreadSnapshot]?

    init(captured: [ThreadSnapshot]? = nil) { self.captured = captured }

    func count() -> Int { liveThreadIDs().count }

    func unavailableReason() -> String? { threadListingFailure() }

    func collect() -> ProfileData {
        var data = ProfileData(
            sampleTypes: [ValueType(type: "goroutine", unit: "count")],
            periodType: ValueType(type: "goroutine", unit: "count"),
            period: 1)
        data.timeNanos = Clock.wallNanoseconds()
        let (threads, stats) = ThreadDumper.dumpWithStats(deadlineMilliseconds: Self.deadlineMilliseconds)
        var silent = 0
        for thread in threads where thread.status != .exited {
            if !thread.answered { silent += 1 }
            data.add(ProfileData.Key(addresses: Self.adjusted(thread.stack)), [1])
        }
        data.comments = threads.isEmpty
            ? ["swift-pprof: thread dump unavailable (SIGPROF is handled by something else in this process)"]
            : ["swift-pprof: threads=\(threads.count) without_stack=\(silent) (blocked the signal or did not answer within \(Self.deadlineMilliseconds) ms)"]
        if ThreadDumper.unwoundWithoutLibunwind(stats) { data.comments.append(ThreadDumper.withoutLibunwindComment) }
        return data
    }

    func text(debug: Int, symbols: some SymbolSource) -> String {
        if debug >= 2 { return fullDump(symbols: symbols) }
        // pprof rejects a whole count profile over one "N @" line with no
        // address: threads that did not answer are told in a comment instead.
        return LegacyText.countProfile(name, collect(), leafIsExact: true, symbols: symbols,
                                       emptyStacksNote: "without a stack: they block the dump signal or did not answer within \(Self.deadlineMilliseconds) ms")
    }

    /// One block per thread, shaped like Go's `goroutine N [state]:` dump.
    /// Threads blocked at the same place have the same stack: each distinct
    /// stack is symbolized and written once, then reused (a dump of 1000
    /// threads has a few dozen distinct stacks).
    private func fullDump(symbols: some SymbolSource) -> String {
        Self.fullDump(captured ?? ThreadDumper.dump(deadlineMilliseconds: Self.deadlineMilliseconds), symbols: symbols)
    }

    /// The `debug=2` text of threads already captured (the symbol read-ahead
    /// renders one from its last capture, so that a first request finds the
    /// formatting path warm too).
    static func fullDump(_ threads: [ThreadSnapshot], symbols: some SymbolSource) -> String {
        let stacks = Set(threads.lazy.filter(\.answered).map(\.stack))
        let symbols = PrefetchedSymbols(symbols, addresses: stacks.flatMap { Self.adjusted($0) })
        var frameText: [[UInt64]: String] = [:]
        for stack in stacks { frameText[stack] = Self.frameLines(stack, symbols: symbols) }
        var out = ""
        for thread in threads.sorted(by: { $0.tid < $1.tid }) where thread.status != .exited {
            let cpu = thread.cpuNanoseconds >= 0 ? ", \(Self.seconds(thread.cpuNanoseconds)) CPU" : ""
            out += "goroutine \(thread.tid) \"\(thread.name)\" [\(thread.state)\(cpu)]:\n"
            if !thread.answered {
                out += "\t(no stack: \(Self.reason(thread.status)))\n\n"
                continue
            }
            out += frameText[thread.stack] ?? ""
            if thread.truncated { out += "...additional frames elided...\n" }
            out += "\n"
        }
        return out
    }

    /// A stack's frames in the `debug=2` form: function, then file:line and offset.
    private static func frameLines(_ stack: [UInt64], symbols: some SymbolSource) -> String {
        var out = ""
        for address in adjusted(stack) {
            let frames = symbols.frames(at: address)
            guard !frames.isEmpty else {
                out += "0x\(String(address, radix: 16))\n\t?\n"
                continue
            }
            for (i, frame) in frames.enumerated() {
                let inlined = i < frames.count - 1
                let offset = !inlined && frame.entry > 0 && address >= frame.entry ? " +0x" + String(address - frame.entry, radix: 16) : ""
                let place = frame.file.isEmpty ? "?" : "\(frame.file):\(frame.line)"
                out += "\(frame.function)\(inlined ? " (inlined)" : "")\n\t\(place)\(offset)\n"
            }
        }
        return out
    }

    /// The leaf is the exact interrupted PC; callers' return addresses get
    /// one off so they point into the call instruction.
    static func adjusted(_ stack: [UInt64]) -> [UInt64] {
        stack.enumerated().map { i, pc in i == 0 ? pc : pc &- 1 }
    }

    static func seconds(_ ns: Int64) -> String {
        let ms = ns / 1_000_000
        return "\(ms / 1000).\(String(ms % 1000 + 1000).dropFirst())s"
    }

    static func reason(_ status: ThreadSnapshot.Status) -> String {
        switch status {
        case .signalBlocked: return "the thread blocks the dump signal"
        case .timedOut: return "did not answer within \(deadlineMilliseconds) ms"
        case .signalFailed: return "the kernel refused to signal it"
        case .tooManyThreads: return "more threads than one dump captures"
        case .exited: return "exited during the dump"
        case .answered, .dumpingThread, .readWhileBlocked: return "unknown"
        }
    }
}

/// `/debug/pprof/threadcreate`: where the live threads were created (an
/// interposed `pthread_create` records the creator's stack).
struct ThreadCreateProfile: NamedProfile {
    let name = "threadcreate"
    let description = "Stack traces that led to the creation of new OS threads"

    func count() -> Int { liveThreadIDs().count }

    func unavailableReason() -> String? { threadListingFailure() }

    func collect() -> ProfileData {
        var data = ProfileData(
            sampleTypes: [ValueType(type: "threadcreate", unit: "count")],
            periodType: ValueType(type: "threadcreate", unit: "count"),
            period: 1)
        data.timeNanos = Clock.wallNanoseconds()
        let recorded = Dictionary(ThreadDumper.threadCreationStacks().map { ($0.tid, $0.stack) }, uniquingKeysWith: { a, _ in a })
        for tid in liveThreadIDs() {
            // Threads created before the library loaded (the main thread
            // among them) have no recorded stack: counted with an empty one, as Go does.
            let stack = recorded[tid] ?? []
            data.add(ProfileData.Key(addresses: stack.map { $0 &- 1 }), [1])
        }
        return data
    }

    func text(debug: Int, symbols: some SymbolSource) -> String {
        LegacyText.countProfile(name, collect(), leafIsExact: false, symbols: symbols)
    }
}

/// Why the threads cannot be listed now (EMFILE at the descriptor limit),
/// or nil.
func threadListingFailure() -> String? {
    guard let dir = opendir("/proc/self/task") else {
        return "cannot list the process's threads: \(SocketIO.errorText(errno))"
    }
    closedir(dir)
    return nil
}

/// Thread ids from /proc/self/task.
func liveThreadIDs() -> [Int32] {
    guard let dir = opendir("/proc/self/task") else { return [] }
    defer { closedir(dir) }
    var ids: [Int32] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        if let tid = Int32(name) { ids.append(tid) }
    }
    return ids
}

extension SymbolPreload {
    /// An address in this file's compile unit, for the read-ahead
    /// (`requestPathAddresses`). Returns its own number: identical
    /// functions could be merged into one.
    static let threadProfilesUnit: @convention(c) () -> Int = { 7 }
}
