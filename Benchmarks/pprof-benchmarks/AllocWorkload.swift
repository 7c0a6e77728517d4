import Glibc
import Synchronization

// The allocation-heavy code the heap benchmarks run, identical in the build
// with the malloc interposer and in the one without it (HeapProfiling off).

// MARK: - Microbenchmarks: one malloc+free pair, one class alloc+release

/// A small Swift object: 16 bytes of header, 32 of fields (48 bytes).
final class SmallObject {
    var a: Int
    var b: Int
    var c: Int
    var d: Int
    init(_ value: Int) { a = value; b = value &+ 1; c = value &+ 2; d = value &+ 3 }
}

enum AllocMicro {
    /// Live blocks kept in a ring: each step frees the oldest and allocates
    /// anew, so blocks are reused in a realistic (not last-in-first-out
    /// only) order and the pointers escape (nothing can be optimized away).
    static let ring = 64

    /// `n` malloc+free pairs, sizes 16, 32, ... 256 bytes in a scrambled order.
    @inline(never)
    static func mallocPairs(_ n: Int, _ slots: UnsafeMutablePointer<UnsafeMutableRawPointer?>) -> UInt8 {
        var seen: UInt8 = 0
        for i in 0..<n {
            let size = 16 &+ ((i &* 7) & 15) &* 16
            let slot = i & (ring - 1)
            if let old = slots[slot] { seen ^= old.load(as: UInt8.self) }
            free(slots[slot])
            guard let p = malloc(size) else { fatal("malloc failed") }
            p.storeBytes(of: UInt8(truncatingIfNeeded: i), as: UInt8.self)
            slots[slot] = p
        }
        return seen
    }

    /// `n` Swift class instances allocated (swift_allocObject) and released
    /// (swift_deallocObject), each through malloc and free.
    @inline(never)
    static func classPairs(_ n: Int, _ slots: UnsafeMutablePointer<SmallObject?>) -> Int {
        var seen = 0
        for i in 0..<n {
            let slot = i & (ring - 1)
            seen ^= slots[slot]?.d ?? 0
            slots[slot] = SmallObject(i)
        }
        return seen
    }

    /// ns per pair: the median over `batches` batches of `perBatch` pairs,
    /// each timed with the thread's own CPU clock (preemption excluded).
    static func measure(perBatch: Int, batches: Int) -> (malloc: Distribution, object: Distribution) {
        let raw = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: ring)
        raw.initialize(repeating: nil, count: ring)
        let objects = UnsafeMutablePointer<SmallObject?>.allocate(capacity: ring)
        objects.initialize(repeating: nil, count: ring)
        var sink = 0
        // Warm-up: allocator caches, page faults, the sampler's tables.
        sink ^= Int(mallocPairs(perBatch * 2, raw))
        sink ^= classPairs(perBatch * 2, objects)
        var mallocTimes: [Double] = [], objectTimes: [Double] = []
        for _ in 0..<batches {
            // Interleaved, so both kinds see the same machine.
            var t0 = threadCPUNanoseconds()
            sink ^= Int(mallocPairs(perBatch, raw))
            var t1 = threadCPUNanoseconds()
            mallocTimes.append(Double(t1 - t0) / Double(perBatch))
            t0 = threadCPUNanoseconds()
            sink ^= classPairs(perBatch, objects)
            t1 = threadCPUNanoseconds()
            objectTimes.append(Double(t1 - t0) / Double(perBatch))
        }
        for i in 0..<ring { free(raw[i]) }
        raw.deallocate()
        objects.deinitialize(count: ring)
        objects.deallocate()
        if sink == 0x5EED_5EED { printOut("") } // keeps `sink` alive
        return (Distribution(mallocTimes), Distribution(objectTimes))
    }
}

// MARK: - An allocation-heavy Swift workload

final class GraphNode {
    var value: Int
    var children: [GraphNode] = []
    weak var parent: GraphNode?
    init(_ value: Int) { self.value = value }
}

/// One unit of allocation-heavy work, the way server code allocates: arrays
/// that grow, a dictionary keyed by heap strings, string building, and a
/// small class graph; everything is dropped at the end. Returns a checksum
/// that does not depend on hashing order (Swift seeds hashes per process).
@inline(never)
func allocationRound(_ seed: Int) -> UInt64 {
    var sum: UInt64 = 0
    // A growing array, then a derived one.
    var numbers: [Int] = []
    for i in 0..<48 { numbers.append(i &* seed &+ i) }
    let doubled = numbers.map { $0 &* 2 }
    sum &+= UInt64(truncatingIfNeeded: doubled.reduce(0, &+))
    // A dictionary with heap-allocated (longer than 15 bytes) string keys.
    var table: [String: Int] = [:]
    for i in 0..<12 { table["request-header-\(seed % 97)-\(i)"] = i &+ seed }
    for (key, value) in table { sum &+= UInt64(truncatingIfNeeded: key.utf8.count &+ value) }
    // String building.
    var text = ""
    for i in 0..<6 { text += "field \(i) = \(seed &+ i); " }
    let parts = text.split(separator: ";")
    sum &+= UInt64(truncatingIfNeeded: text.utf8.count &+ parts.count)
    // A class graph: a root, 4 children, 3 grandchildren each.
    let root = GraphNode(seed)
    for c in 0..<4 {
        let child = GraphNode(c)
        child.parent = root
        for g in 0..<3 {
            let grandchild = GraphNode(g &+ seed)
            grandchild.parent = child
            child.children.append(grandchild)
        }
        root.children.append(child)
    }
    for child in root.children {
        sum &+= UInt64(truncatingIfNeeded: child.value &+ (child.parent?.value ?? 0))
        for g in child.children { sum &+= UInt64(truncatingIfNeeded: g.value) }
    }
    return sum
}

enum AllocWorkload {
    /// Runs `rounds` rounds split over `threads` fresh threads (each below
    /// `depth` frames, as server code is); times the run only.
    static func run(threads: Int, rounds: Int, depth: Int = 20) -> RunTimes {
        let perThread = rounds / threads
        let checksum = Atomic<UInt64>(0)
        let workerCPU = Atomic<Int64>(0)
        let go = Atomic<Bool>(false)
        let ready = Atomic<Int>(0)
        var handles: [pthread_t] = []
        for t in 0..<threads {
            handles.append(spawnThread(name: "bench-alloc") {
                _ = ready.add(1, ordering: .acquiringAndReleasing)
                while !go.load(ordering: .acquiring) { sched_yield() }
                let c0 = threadCPUNanoseconds()
                let sum = atDepth(depth) {
                    var s: UInt64 = 0
                    for r in 0..<perThread { s &+= allocationRound(t &* perThread &+ r) }
                    return s
                }
                let c1 = threadCPUNanoseconds()
                _ = workerCPU.add(c1 - c0, ordering: .relaxed)
                _ = checksum.add(sum, ordering: .relaxed)
            })
        }
        while ready.load(ordering: .acquiring) < threads { sched_yield() }
        let wall0 = monotonicNanoseconds()
        let cpu0 = processCPUNanoseconds()
        go.store(true, ordering: .releasing)
        for h in handles { pthread_join(h, nil) }
        let cpu1 = processCPUNanoseconds()
        let wall1 = monotonicNanoseconds()
        return RunTimes(wallNanoseconds: wall1 - wall0, processCPUNanoseconds: cpu1 - cpu0,
                        workerCPUNanoseconds: workerCPU.load(ordering: .relaxed),
                        checksum: checksum.load(ordering: .relaxed))
    }
}
