internal import CPprof

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One allocation stack of the heap profile, with RAW sampled counts
/// (apply `scaleHeapSample` to estimate the real ones).
struct HeapRecord: Sendable, Equatable {
    /// Leaf first: return addresses as captured (`stack[0]` returns into the
    /// allocator's caller).
    var stack: [UInt64]
    var allocObjects: Int64
    var allocBytes: Int64
    var inuseObjects: Int64
    var inuseBytes: Int64
}

/// The sampler's counters and memory use.
struct HeapSamplerStats: Sendable, Equatable {
    var isAvailable: Bool
    /// This process's `malloc` is the interposer's.
    var isInterposed: Bool
    var rate: Int
    var sampledAllocs: UInt64
    var sampledFrees: UInt64
    var liveSamples: UInt64
    var liveCapacity: UInt64
    var stacks: UInt64
    var stackCapacity: UInt64
    var droppedLiveTableFull: UInt64
    var droppedStackTableFull: UInt64
    var droppedNoMemory: UInt64
    /// Samples recorded with the leaf frame only (stack range unknown).
    var stackUnbounded: UInt64
    var bootstrapBytes: UInt64
    /// Bytes of its tables the sampler has written so far: they grow with
    /// the live samples and stacks, and bound what the tables add to RSS.
    var memoryBytes: UInt64
    /// Address space reserved for the tables (fixed; costs no memory until written).
    var reservedBytes: UInt64
}

/// Thin wrapper over the C heap sampler (malloc interposer).
enum HeapSampler {
    /// False when built without the `HeapProfiling` trait.
    static var isAvailable: Bool { cpprof_heap_available() != 0 }

    /// Average bytes between samples, like Go's `runtime.MemProfileRate`:
    /// 0 = off, 1 = every allocation, default 524288.
    static var rate: Int {
        get { Int(cpprof_heap_rate()) }
        set { cpprof_heap_set_rate(Int64(newValue)) }
    }

    /// Runs `body` with the calling thread's allocations left out of the
    /// heap profiles: the profiler's own work, on its threads or on the
    /// app's (a ``PprofHandler`` on a framework's thread).
    static func ownWork<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        cpprof_heap_own_enter()
        defer { cpprof_heap_own_leave() }
        return try body()
    }

    /// Every stack with at least one sampled allocation since start.
    static func snapshot() -> [HeapRecord] {
        guard isAvailable else { return [] }
        var capacity = cpprof_heap_snapshot(nil, 0) + 16
        while true {
            let buffer = UnsafeMutablePointer<cpprof_heap_record>.allocate(capacity: capacity)
            defer { buffer.deallocate() }
            let total = cpprof_heap_snapshot(buffer, capacity)
            if total > capacity { // stacks appeared meanwhile
                capacity = total + 16
                continue
            }
            return UnsafeBufferPointer(start: buffer, count: total).map(HeapRecord.init(raw:))
        }
    }

    static func stats() -> HeapSamplerStats {
        var s = cpprof_heap_stats()
        cpprof_heap_get_stats(&s)
        return HeapSamplerStats(
            isAvailable: s.available != 0, isInterposed: s.interposed != 0, rate: Int(s.rate),
            sampledAllocs: s.sampled_allocs, sampledFrees: s.sampled_frees,
            liveSamples: s.live_samples, liveCapacity: s.live_capacity,
            stacks: s.stacks, stackCapacity: s.stack_capacity,
            droppedLiveTableFull: s.dropped_live_full, droppedStackTableFull: s.dropped_stack_full,
            droppedNoMemory: s.dropped_no_memory, stackUnbounded: s.stack_unbounded,
            bootstrapBytes: s.bootstrap_bytes, memoryBytes: s.memory_bytes,
            reservedBytes: s.reserved_bytes)
    }
}

extension HeapRecord {
    init(raw r: cpprof_heap_record) {
        let depth = min(Int(r.depth), Int(CPPROF_HEAP_MAX_DEPTH))
        stack = withUnsafePointer(to: r.pcs) { tuple in
            tuple.withMemoryRebound(to: UInt64.self, capacity: Int(CPPROF_HEAP_MAX_DEPTH)) {
                Array(UnsafeBufferPointer(start: $0, count: depth))
            }
        }
        allocObjects = Int64(clamping: r.alloc_objects)
        allocBytes = Int64(clamping: r.alloc_bytes)
        inuseObjects = Int64(clamping: r.alloc_objects &- min(r.free_objects, r.alloc_objects))
        inuseBytes = Int64(clamping: r.alloc_bytes &- min(r.free_bytes, r.alloc_bytes))
    }
}

/// Go's `scaleHeapSample` (runtime/pprof protomem.go): estimates the real
/// count and size of a stack's allocations from sampled ones, given that an
/// allocation of `s` bytes was sampled with probability `1 - exp(-s/rate)`.
func scaleHeapSample(count: Int64, size: Int64, rate: Int) -> (count: Int64, size: Int64) {
    if count == 0 || size == 0 { return (0, 0) }
    if rate <= 1 { return (count, size) } // every allocation sampled, or unknown
    let averageSize = Double(size) / Double(count)
    let scale = 1 / (1 - exp(-averageSize / Double(rate)))
    return (truncatingToInt64(Double(count) * scale), truncatingToInt64(Double(size) * scale))
}

/// Go's `int64(f)` for the values scaling produces: toward zero, saturating.
private func truncatingToInt64(_ value: Double) -> Int64 {
    if value.isNaN { return 0 }
    if value >= 0x1p63 { return .max }
    if value <= -0x1p63 { return .min }
    return Int64(value)
}
