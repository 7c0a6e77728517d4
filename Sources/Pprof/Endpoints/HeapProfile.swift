/// `/debug/pprof/heap` and `/debug/pprof/allocs`: sampled allocations with
/// their stacks, in Go's shape and with Go's scaling. The two differ only in
/// the default sample type, as in Go.
struct HeapProfile: NamedProfile {
    let name: String
    let description: String
    let defaultSampleType: String?

    static let heap = HeapProfile(
        name: "heap",
        description: "A sampling of memory allocations of live objects. (Go's gc parameter is accepted and ignored: Swift frees memory when the last reference goes.)",
        defaultSampleType: nil)
    static let allocs = HeapProfile(
        name: "allocs", description: "A sampling of all past memory allocations", defaultSampleType: "alloc_space")

    func count() -> Int { HeapSampler.snapshot().count }

    func collect() -> ProfileData {
        let rate = HeapSampler.rate
        var data = ProfileData(
            sampleTypes: [ValueType(type: "alloc_objects", unit: "count"), ValueType(type: "alloc_space", unit: "bytes"),
                          ValueType(type: "inuse_objects", unit: "count"), ValueType(type: "inuse_space", unit: "bytes")],
            periodType: ValueType(type: "space", unit: "bytes"),
            period: Int64(rate))
        data.defaultSampleType = defaultSampleType
        data.timeNanos = Clock.wallNanoseconds()
        let all = HeapSampler.snapshot()
        let symbols = PrefetchedSymbols(Symbolizer.shared, addresses: all.flatMap { $0.stack.map { $0 &- 1 } })
        let records = Self.appRecords(all, symbols: symbols)
        for record in records {
            let alloc = scaleHeapSample(count: record.allocObjects, size: record.allocBytes, rate: rate)
            let inuse = scaleHeapSample(count: record.inuseObjects, size: record.inuseBytes, rate: rate)
            var labels: [SampleLabel] = []
            if record.allocObjects > 0 {
                labels.append(SampleLabel(key: "bytes", number: record.allocBytes / record.allocObjects))
            }
            let key = ProfileData.Key(addresses: Self.trimmingAllocatorFrames(record.stack.map { $0 &- 1 }, symbols: symbols),
                                      labels: labels)
            data.add(key, [alloc.count, alloc.size, inuse.count, inuse.size])
        }
        data.comments = Self.comments(ownSamples: all.count - records.count)
        return data
    }

    func text(debug: Int, symbols: some SymbolSource) -> String {
        let rate = HeapSampler.rate
        let all = HeapSampler.snapshot()
        let symbols = PrefetchedSymbols(symbols, addresses: all.flatMap { $0.stack.map { $0 &- 1 } })
        let records = Self.appRecords(all, symbols: symbols).sorted { a, b in
            a.inuseBytes != b.inuseBytes ? a.inuseBytes > b.inuseBytes : a.stack.lexicographicallyPrecedes(b.stack)
        }
        let inuseObjects = records.reduce(0) { $0 + $1.inuseObjects }
        let inuseBytes = records.reduce(0) { $0 + $1.inuseBytes }
        let allocObjects = records.reduce(0) { $0 + $1.allocObjects }
        let allocBytes = records.reduce(0) { $0 + $1.allocBytes }
        // Go's header: raw sampled counts, and twice the rate after `heap/`.
        var out = "heap profile: \(inuseObjects): \(inuseBytes) [\(allocObjects): \(allocBytes)] @ heap/\(2 * rate)\n"
        for r in records {
            let adjusted = r.stack.map { $0 &- 1 }
            out += "\(r.inuseObjects): \(r.inuseBytes) [\(r.allocObjects): \(r.allocBytes)] @"
            out += LegacyText.addressList(adjusted, leafIsExact: false) + "\n"
            out += LegacyText.frameComments(adjusted, symbols: symbols)
            out += "\n"
        }
        out += "\n# swift-pprof heap sampler\n"
        for line in Self.comments(ownSamples: all.count - records.count) { out += "# \(line)\n" }
        return out
    }

    /// The Swift runtime's allocation entry points, hidden from the leaf end
    /// of heap stacks as Go hides `runtime.*`: the interesting frame is the
    /// code that allocated, not `swift_allocObject`.
    static let allocatorFunctions: Set<String> = [
        "swift_slowAlloc", "swift_slowAllocTyped", "swift_allocObject", "swift_allocBox", "swift_allocEmptyBox",
        "swift_coroFrameAlloc", "swift_task_alloc",
    ]

    static func trimmingAllocatorFrames(_ stack: [UInt64], symbols: some SymbolSource = Symbolizer.shared) -> [UInt64] {
        var start = 0
        while start < stack.count - 1,
              let name = symbols.frames(at: stack[start]).last?.systemName, allocatorFunctions.contains(name) {
            start += 1
        }
        return Array(stack[start...])
    }

    /// The records of the app's own allocations. The profiler keeps its own
    /// out where it can tell when allocating (`HeapSampler.ownWork`), but
    /// not in async code, which may hop threads between the calls: there
    /// the runtime allocates for `PprofHandler.respond(to:)` (continuations,
    /// cancellation records, task-allocator slabs), and with async stacks
    /// that is seen. A stack with a frame of this library (its Swift module
    /// or its C target) is the library's allocation, and is left out.
    static func appRecords(_ records: [HeapRecord], symbols: some SymbolSource) -> [HeapRecord] {
        records.filter { record in
            !record.stack.contains { address in
                symbols.frames(at: address &- 1).contains { isProfilerFunction($0.systemName) }
            }
        }
    }

    /// Whether a mangled symbol is one of this library's functions.
    static func isProfilerFunction(_ systemName: String) -> Bool {
        systemName.hasPrefix("$s5Pprof") || systemName.hasPrefix("cpprof_")
    }

    private static func comments(ownSamples: Int) -> [String] {
        let s = HeapSampler.stats()
        // Samples taken from now on see async callers (if not already so).
        AsyncStacks.prepare()
        AsyncStacks.refreshSnapshotIfCut()
        guard s.isAvailable else {
            return ["swift-pprof: heap profiling is unavailable: built without the HeapProfiling trait"]
        }
        let symbols = Symbolizer.shared.memoryUsage
        let own = UInt64(symbols.total) + s.memoryBytes
        var lines = ["swift-pprof: rate=\(s.rate) sampled_allocs=\(s.sampledAllocs) sampled_frees=\(s.sampledFrees) live_samples=\(s.liveSamples) stacks=\(s.stacks) profiler_memory_bytes=\(own)",
                     "swift-pprof: profiler memory counted: heap_sampler_tables=\(s.memoryBytes) (of \(s.reservedBytes) reserved) symbol_tables=\(symbols.symbols) line_tables=\(symbols.lines) inline_tables=\(symbols.inlines) symbol_cache=\(symbols.cache) (not counted: per-request buffers, thread stacks, mapped symbol files, which are page cache)",
                     "swift-pprof: dropped_live_table_full=\(s.droppedLiveTableFull) dropped_stack_table_full=\(s.droppedStackTableFull) dropped_no_memory=\(s.droppedNoMemory) leaf_only=\(s.stackUnbounded)"]
        lines.append("swift-pprof: profiler_own_samples_left_out=\(ownSamples)")
        lines.append(AsyncStacks.lifetimeComment())
        lines.append(SymbolPreload.comment())
        if !s.isInterposed {
            lines.append("swift-pprof: malloc is not interposed in this process (another allocator wins); no allocations are sampled")
        }
        return lines
    }
}
