import CPprof
import Testing

@testable import Pprof

#if canImport(Glibc)
import Glibc
#endif

// The sampling rate is process-wide: these tests run one at a time and each
// sets the rate it needs and restores the previous one.
extension HeapSamplingTests {
    @Suite(.serialized, .enabled(if: HeapSampler.isAvailable, "built without the HeapProfiling trait"))
    struct HeapSamplerTests {
        // MARK: interposition and the semantics of every interposed function

        @Test func interposesTheWholeProcess() throws {
            #expect(HeapSampler.stats().isInterposed)
            // libc allocating internally (strdup -> malloc) must reach us too.
            try withRate(1) {
                let text = String(repeating: "x", count: 3000)
                let before = try #require(liveByStack())
                let copy = try #require(strdup(text))
                let during = try #require(liveByStack())
                #expect(delta(before, during).contains { $0.objects == 1 && $0.bytes == 3001 })
                free(copy)
                let after = try #require(liveByStack())
                #expect(!delta(before, after).contains { $0.objects == 1 && $0.bytes == 3001 })
            }
        }

        @Test(arguments: [0, 1, 524288])
        func mallocFamilySemantics(rate: Int) throws {
            try withRate(rate) {
                // malloc + usable size: the whole usable range is ours to write.
                let p = try #require(malloc(100))
                #expect(usableSize(p) >= 100)
                memset(p, 0x5A, usableSize(p))
                free(p)
                free(nil)

                // calloc zeroes, even memory that was just dirtied and freed.
                for _ in 0..<4 {
                    let dirty = try #require(malloc(8000))
                    memset(dirty, 0xAB, 8000)
                    free(dirty)
                    let zeroed = try #require(calloc(1000, 8))
                    let bytes = UnsafeRawBufferPointer(start: zeroed, count: 8000)
                    #expect(bytes.allSatisfy { $0 == 0 })
                    #expect(usableSize(zeroed) >= 8000)
                    free(zeroed)
                }
                errno = 0
                #expect(calloc(Int.max / 2, 4) == nil)

                // posix_memalign: alignment honoured, invalid alignments refused.
                for shift in 3...16 {
                    let alignment = 1 << shift
                    var out: UnsafeMutableRawPointer?
                    #expect(posix_memalign(&out, alignment, 100 + shift) == 0)
                    let block = try #require(out)
                    #expect(Int(bitPattern: block) % alignment == 0)
                    #expect(usableSize(block) >= 100 + shift)
                    memset(block, 1, 100 + shift)
                    free(block)
                }
                var none: UnsafeMutableRawPointer?
                #expect(posix_memalign(&none, 24, 10) == EINVAL)
                #expect(posix_memalign(&none, 4, 10) == EINVAL)

                // aligned_alloc, memalign, valloc, pvalloc (the last three are
                // not imported into Swift: call the process's symbols).
                let memalignFn = try #require(symbol("memalign", as: MemalignFn.self))
                let vallocFn = try #require(symbol("valloc", as: VallocFn.self))
                let pvallocFn = try #require(symbol("pvalloc", as: VallocFn.self))
                let page = Int(sysconf(Int32(_SC_PAGESIZE)))
                for alignment in [16, 64, 256, 4096] {
                    let a = try #require(aligned_alloc(alignment, alignment * 3))
                    #expect(Int(bitPattern: a) % alignment == 0)
                    #expect(usableSize(a) >= alignment * 3)
                    free(a)
                    let m = try #require(memalignFn(alignment, 1000))
                    #expect(Int(bitPattern: m) % alignment == 0)
                    #expect(usableSize(m) >= 1000)
                    free(m)
                }
                let v = try #require(vallocFn(3000))
                #expect(Int(bitPattern: v) % page == 0)
                #expect(usableSize(v) >= 3000)
                free(v)
                let pv = try #require(pvallocFn(page + 1))
                #expect(Int(bitPattern: pv) % page == 0)
                #expect(usableSize(pv) >= 2 * page) // rounded up to whole pages
                memset(pv, 7, 2 * page)
                free(pv)

                // realloc: growth and shrinking keep the contents.
                let r0 = try #require(realloc(nil, 100)) // realloc(NULL, n) == malloc(n)
                for i in 0..<100 { r0.storeBytes(of: UInt8(i), toByteOffset: i, as: UInt8.self) }
                let r1 = try #require(realloc(r0, 200_000))
                #expect(usableSize(r1) >= 200_000)
                #expect((0..<100).allSatisfy { r1.load(fromByteOffset: $0, as: UInt8.self) == UInt8($0) })
                let r2 = try #require(realloc(r1, 50))
                #expect((0..<50).allSatisfy { r2.load(fromByteOffset: $0, as: UInt8.self) == UInt8($0) })
                // realloc(p, 0) frees p (glibc returns NULL; others a minimal block).
                if let r3 = realloc(r2, 0) { free(r3) }

                // reallocarray: overflow is ENOMEM and leaves the block alone.
                let ra = try #require(reallocarray(nil, 10, 10))
                memset(ra, 0x33, 100)
                errno = 0
                #expect(reallocarray(ra, Int.max / 2, 4) == nil)
                #expect(errno == ENOMEM)
                #expect(ra.load(fromByteOffset: 99, as: UInt8.self) == 0x33)
                let rb = try #require(reallocarray(ra, 1000, 10))
                #expect(usableSize(rb) >= 10_000)
                #expect(rb.load(fromByteOffset: 99, as: UInt8.self) == 0x33)
                free(rb)
            }
        }

        @Test(arguments: [0, 1, 524288])
        func arrayCapacityMatchesUsableSize(rate: Int) throws {
            try withRate(rate) {
                for requested in [1, 7, 24, 100, 1000, 5000, 100_000] {
                    var bytes = [UInt8]()
                    bytes.reserveCapacity(requested)
                    try checkCapacity(of: bytes, atLeast: requested)
                    bytes.append(contentsOf: repeatElement(9, count: bytes.capacity)) // no regrowth needed
                    #expect(bytes.count == bytes.capacity)

                    let words = [Int](repeating: 3, count: requested)
                    try checkCapacity(of: words, atLeast: requested)
                }
            }
        }

        // MARK: accuracy

        @Test func rateOneRecordsExactLiveBytesOfASite() {
            withRate(1) {
                let count = 1000, size = 1234
                let before = HeapSampler.snapshot()
                let site = allocateAtSiteA(count: count, size: size)
                #expect(site.range.upperBound > site.range.lowerBound)
                #expect(site.range.upperBound - site.range.lowerBound < 1 << 16)
                let live = HeapSampler.snapshot()
                let gained = totals(in: site.range, live) - totals(in: site.range, before)
                #expect(gained.inuseObjects == Int64(count))
                #expect(gained.inuseBytes == Int64(count * size))
                #expect(gained.allocObjects == Int64(count))
                #expect(gained.allocBytes == Int64(count * size))

                for block in site.blocks { block.deallocate() }
                let after = totals(in: site.range, HeapSampler.snapshot()) - totals(in: site.range, before)
                #expect(after.inuseObjects == 0)
                #expect(after.inuseBytes == 0)
                #expect(after.allocObjects == Int64(count)) // still counted as allocated
            }
        }

        @Test func offSamplesNothingAndRateOneSamplesEverything() {
            let previous = HeapSampler.rate
            defer { HeapSampler.rate = previous }
            HeapSampler.rate = 1 << 50
            #expect(HeapSampler.rate == (1 << 40) - 1)
            HeapSampler.rate = 4096
            #expect(HeapSampler.rate == 4096)
            HeapSampler.rate = -5
            #expect(HeapSampler.rate == 0)
            let off = HeapSampler.stats().sampledAllocs
            for i in 0..<10_000 { free(blackHole(malloc(i % 4096))) }
            #expect(HeapSampler.stats().sampledAllocs == off)

            HeapSampler.rate = 1
            let on = HeapSampler.stats().sampledAllocs
            for i in 0..<10_000 { free(blackHole(malloc(i % 4096))) }
            #expect(HeapSampler.stats().sampledAllocs - on >= 10_000)
        }

        @Test func defaultRateEstimatesWithinTenPercent() {
            withRate(Int(CPPROF_HEAP_DEFAULT_RATE)) {
                // 64 MiB live in 1 KiB objects from site A, 32 MiB in 512 B objects
                // from site B. One round gives ~128 and ~64 samples (9% and 13%
                // standard error), so average the in-use estimate over rounds:
                // 48 rounds give ~6100 and ~3100 samples, a standard error of 1.3
                // and 1.8 %, and the 10 % bounds are more than 5 of them wide.
                let rounds = 48
                let rate = HeapSampler.rate
                var inuseA = 0.0, inuseB = 0.0
                let start = HeapSampler.snapshot()
                var rangeA: ClosedRange<UInt64>?, rangeB: ClosedRange<UInt64>?
                for _ in 0..<rounds {
                    let a = allocateAtSiteA(count: 65536, size: 1024)
                    let b = allocateAtSiteB(count: 65536, size: 512)
                    rangeA = a.range
                    rangeB = b.range
                    let live = HeapSampler.snapshot()
                    inuseA += Double(scaledInuseBytes(in: a.range, live, rate: rate))
                    inuseB += Double(scaledInuseBytes(in: b.range, live, rate: rate))
                    for block in a.blocks { block.deallocate() }
                    for block in b.blocks { free(block) }
                }
                let mib = 1024.0 * 1024.0
                let averageA = inuseA / Double(rounds), averageB = inuseB / Double(rounds)
                #expect(abs(averageA / (64 * mib) - 1) < 0.10, "site A in use: \(averageA / mib) MiB")
                #expect(abs(averageB / (32 * mib) - 1) < 0.10, "site B in use: \(averageB / mib) MiB")

                // Cumulative allocations over all rounds, scaled per record.
                let end = HeapSampler.snapshot()
                for (range, total) in [(rangeA!, 64 * mib), (rangeB!, 32 * mib)] {
                    let allocated = scaledAllocBytes(in: range, end, rate: rate)
                        - scaledAllocBytes(in: range, start, rate: rate)
                    #expect(abs(Double(allocated) / (Double(rounds) * total) - 1) < 0.10)
                    #expect(totals(in: range, end).inuseBytes == totals(in: range, start).inuseBytes)
                }
            }
        }

        // MARK: threads

        @Test func manyThreadsAtRateOneLeaveNoLiveSamples() throws {
            try withRate(1) {
                let threads = 16, iterations = 2000
                let before = HeapSampler.snapshot()
                let baseline = HeapSampler.stats() // after `before`: its arrays are live samples too
                var ids = [pthread_t]()
                let results = UnsafeMutablePointer<WorkerResult>.allocate(capacity: threads)
                defer { results.deallocate() }
                results.initialize(repeating: WorkerResult(), count: threads)
                for t in 0..<threads {
                    var id = pthread_t()
                    let arg = WorkerArgument(iterations: iterations, result: results + t)
                    let box = Unmanaged.passRetained(arg).toOpaque()
                    #expect(pthread_create(&id, nil, heapWorkerMain, box) == 0)
                    ids.append(id)
                }
                for id in ids { pthread_join(id, nil) }

                let stats = HeapSampler.stats()
                let after = HeapSampler.snapshot()
                #expect(stats.droppedLiveTableFull == baseline.droppedLiveTableFull)
                #expect(stats.droppedStackTableFull == baseline.droppedStackTableFull)
                var expectedAllocs: Int64 = 0
                var range: ClosedRange<UInt64>?
                for t in 0..<threads {
                    expectedAllocs += results[t].allocations
                    let r = results[t].range
                    range = range.map { min($0.lowerBound, r.lowerBound)...max($0.upperBound, r.upperBound) } ?? r
                }
                let site = try #require(range)
                let gained = totals(in: site, after) - totals(in: site, before)
                #expect(gained.allocObjects == expectedAllocs)
                #expect(gained.inuseObjects == 0)
                #expect(gained.inuseBytes == 0)
                // The table holds no leftovers of the ~100k samples the workers made.
                #expect(stats.liveSamples <= baseline.liveSamples + 64)
            }
        }

        @Test func memoryUseIsBoundedAndReported() {
            free(malloc(1)) // the tables exist once something was sampled
            let stats = HeapSampler.stats()
            #expect(stats.liveCapacity >= 100_000)
            #expect(stats.stackCapacity >= 4096)
            #expect(stats.memoryBytes > 0 && stats.memoryBytes <= stats.reservedBytes)
            #expect(stats.reservedBytes < 16 << 20)
            #expect(stats.bootstrapBytes < 256 << 10)
            #expect(stats.liveSamples <= stats.liveCapacity)
            #expect(stats.stacks <= stats.stackCapacity)
        }

        @Test func tablesGrowWithTheLiveSamplesAndCountWhatTheyHold() {
            withRate(1) {
                let before = HeapSampler.stats()
                let count = 20_000
                let blocks = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: count)
                defer { blocks.deallocate() }
                for i in 0..<count { blocks[i] = malloc(16 + i % 64) }
                let during = HeapSampler.stats()
                for i in 0..<count { free(blocks[i]) }
                // More than the first level's 4096 slots are live: the table grew
                // to hold them instead of dropping any.
                #expect(during.droppedLiveTableFull == before.droppedLiveTableFull)
                #expect(during.liveSamples >= before.liveSamples + UInt64(count))
                #expect(during.memoryBytes >= before.memoryBytes)
                // Each live sample takes a key and a value (16 bytes) in a level
                // counted in memoryBytes; each stack at least its counters.
                #expect(during.memoryBytes >= 16 * during.liveSamples + 40 * during.stacks)
                #expect(during.memoryBytes <= during.reservedBytes)
            }
        }

        @Test func heapCommentAddsUpTheProfilersMemory() throws {
            let text = HeapProfile.heap.text(debug: 1, symbols: Symbolizer.shared)
            func number(_ key: String) throws -> UInt64 {
                let line = try #require(text.split(separator: "\n").first { $0.contains(" \(key)=") || $0.contains(":\(key)=") })
                let value = try #require(line.split(separator: " ").first { $0.hasPrefix("\(key)=") })
                return try #require(UInt64(value.dropFirst(key.count + 1)))
            }
            let total = try number("profiler_memory_bytes")
            let parts = try ["heap_sampler_tables", "symbol_tables", "line_tables", "inline_tables", "symbol_cache"].map(number)
            #expect(total == parts.reduce(0, +))
            #expect(parts[0] > 0)
            #expect(parts[1] > 0) // the profile's own frames were symbolized
        }
    }
}

// Runs with or without the trait.
@Suite struct HeapSamplerAvailabilityTests {
    @Test func availabilityFollowsTheTrait() {
        #if HeapProfiling
        #expect(HeapSampler.isAvailable)
        #expect(HeapSampler.stats().isAvailable)
        #else
        #expect(!HeapSampler.isAvailable)
        let previous = HeapSampler.rate
        HeapSampler.rate = 1
        #expect(HeapSampler.rate == 0)
        HeapSampler.rate = previous
        #expect(HeapSampler.snapshot().isEmpty)
        #expect(!HeapSampler.stats().isAvailable)
        #endif
    }

    @Test func scalingMatchesGo() {
        // protomem.go's example: 64 KiB objects at the default rate scale by ~8.52.
        let scaled = scaleHeapSample(count: 10, size: 10 * 65536, rate: 524288)
        #expect(scaled.count == 85)
        #expect(scaled.size == Int64((10 * 65536) / (1 - exp(-65536.0 / 524288))))
        #expect(scaleHeapSample(count: 0, size: 5, rate: 524288) == (0, 0))
        #expect(scaleHeapSample(count: 3, size: 0, rate: 524288) == (0, 0))
        #expect(scaleHeapSample(count: 3, size: 300, rate: 1) == (3, 300))
        #expect(scaleHeapSample(count: 3, size: 300, rate: 0) == (3, 300))
    }
}

// MARK: - Allocation sites (markers bracket the allocating code)

struct MarkedSite {
    var blocks: [UnsafeMutableRawPointer]
    /// PCs inside the allocating function, taken before and after its allocations.
    var range: ClosedRange<UInt64>
}

@inline(never)
func allocateAtSiteA(count: Int, size: Int) -> MarkedSite {
    var blocks = [UnsafeMutableRawPointer]()
    blocks.reserveCapacity(count)
    let first = cpprof_heap_caller_pc()
    for _ in 0..<count { blocks.append(UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)) }
    let last = cpprof_heap_caller_pc()
    return MarkedSite(blocks: blocks, range: UInt64(first)...UInt64(max(first, last)))
}

/// Unlike site A it uses malloc directly (identical functions could be
/// merged by the optimizer). Free its blocks with `free`.
@inline(never)
func allocateAtSiteB(count: Int, size: Int) -> MarkedSite {
    var blocks = [UnsafeMutableRawPointer]()
    blocks.reserveCapacity(count)
    let first = cpprof_heap_caller_pc()
    for _ in 0..<count { blocks.append(malloc(size)!) }
    let last = cpprof_heap_caller_pc()
    return MarkedSite(blocks: blocks, range: UInt64(first)...UInt64(max(first, last)))
}

/// Keeps the optimizer from deleting malloc/free pairs.
@_optimize(none)
func blackHole(_ pointer: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? { pointer }

struct WorkerResult {
    var allocations: Int64 = 0
    var range: ClosedRange<UInt64> = 0...0
}

final class WorkerArgument: @unchecked Sendable {
    let iterations: Int
    let result: UnsafeMutablePointer<WorkerResult>
    init(iterations: Int, result: UnsafeMutablePointer<WorkerResult>) {
        self.iterations = iterations
        self.result = result
    }
}

private func heapWorkerMain(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let arg = Unmanaged<WorkerArgument>.fromOpaque(raw!).takeRetainedValue()
    arg.result.pointee = heapWorker(iterations: arg.iterations)
    return nil
}

/// Allocates through every sampled path (malloc, calloc, realloc growth,
/// posix_memalign, reallocarray) and frees it all.
@inline(never)
func heapWorker(iterations: Int) -> WorkerResult {
    var allocations: Int64 = 0
    let first = cpprof_heap_caller_pc()
    for i in 0..<iterations {
        let a = blackHole(malloc(16 + i % 200))
        let b = blackHole(calloc(3, 40 + i % 50))
        var c: UnsafeMutableRawPointer?
        _ = posix_memalign(&c, 64, 100)
        let d = blackHole(realloc(a, 1000 + i % 3000)) // frees a's sample, records d
        let e = blackHole(reallocarray(nil, 4, 25))
        allocations += 5
        free(blackHole(b))
        free(blackHole(c))
        free(blackHole(d))
        free(blackHole(e))
    }
    let last = cpprof_heap_caller_pc()
    return WorkerResult(allocations: allocations, range: UInt64(first)...UInt64(max(first, last)))
}

// MARK: - Helpers

private typealias UsableSizeFn = @convention(c) (UnsafeMutableRawPointer?) -> Int
private typealias MemalignFn = @convention(c) (Int, Int) -> UnsafeMutableRawPointer?
private typealias VallocFn = @convention(c) (Int) -> UnsafeMutableRawPointer?

/// The process's definition of a C function (ours, when interposed).
private func symbol<T>(_ name: String, as type: T.Type) -> T? {
    guard let address = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
    return unsafeBitCast(address, to: type)
}

/// malloc_usable_size, which Swift does not import. Checks that ours
/// answers exactly what the allocator behind it does.
private func usableSize(_ pointer: UnsafeMutableRawPointer?) -> Int {
    let ours = symbol("malloc_usable_size", as: UsableSizeFn.self)!(pointer)
    let rtldNext = UnsafeMutableRawPointer(bitPattern: -1)
    if let next = dlsym(rtldNext, "malloc_usable_size") {
        #expect(ours == unsafeBitCast(next, to: UsableSizeFn.self)(pointer))
    }
    return ours
}

private func withRate(_ rate: Int, _ body: () throws -> Void) rethrows {
    let previous = HeapSampler.rate
    HeapSampler.rate = rate
    defer { HeapSampler.rate = previous }
    try body()
}

/// Swift computes an Array's capacity from malloc_usable_size of its buffer:
/// (usable - 32-byte header) / stride. It must agree with ours.
private func checkCapacity<T>(of array: [T], atLeast requested: Int) throws {
    #expect(array.capacity >= requested)
    let elements = try #require(array.withUnsafeBufferPointer { $0.baseAddress })
    let object = UnsafeMutableRawPointer(mutating: UnsafeRawPointer(elements)) - 32
    let usable = usableSize(object)
    #expect(usable >= 32 + requested * MemoryLayout<T>.stride)
    #expect(array.capacity == (usable - 32) / MemoryLayout<T>.stride)
}

struct Totals: Equatable {
    var allocObjects: Int64 = 0, allocBytes: Int64 = 0, inuseObjects: Int64 = 0, inuseBytes: Int64 = 0

    static func - (a: Totals, b: Totals) -> Totals {
        Totals(allocObjects: a.allocObjects - b.allocObjects, allocBytes: a.allocBytes - b.allocBytes,
               inuseObjects: a.inuseObjects - b.inuseObjects, inuseBytes: a.inuseBytes - b.inuseBytes)
    }
}

private func passes(through range: ClosedRange<UInt64>, _ record: HeapRecord) -> Bool {
    record.stack.contains { range.contains($0) }
}

private func totals(in range: ClosedRange<UInt64>, _ records: [HeapRecord]) -> Totals {
    var t = Totals()
    for r in records where passes(through: range, r) {
        t.allocObjects += r.allocObjects
        t.allocBytes += r.allocBytes
        t.inuseObjects += r.inuseObjects
        t.inuseBytes += r.inuseBytes
    }
    return t
}

private func scaledInuseBytes(in range: ClosedRange<UInt64>, _ records: [HeapRecord], rate: Int) -> Int64 {
    records.filter { passes(through: range, $0) }
        .reduce(0) { $0 + scaleHeapSample(count: $1.inuseObjects, size: $1.inuseBytes, rate: rate).size }
}

private func scaledAllocBytes(in range: ClosedRange<UInt64>, _ records: [HeapRecord], rate: Int) -> Int64 {
    records.filter { passes(through: range, $0) }
        .reduce(0) { $0 + scaleHeapSample(count: $1.allocObjects, size: $1.allocBytes, rate: rate).size }
}

/// In-use objects and bytes per stack.
private func liveByStack() -> [[UInt64]: (objects: Int64, bytes: Int64)]? {
    var map = [[UInt64]: (objects: Int64, bytes: Int64)]()
    for r in HeapSampler.snapshot() { map[r.stack] = (r.inuseObjects, r.inuseBytes) }
    return map
}

private func delta(_ before: [[UInt64]: (objects: Int64, bytes: Int64)],
                   _ after: [[UInt64]: (objects: Int64, bytes: Int64)]) -> [(objects: Int64, bytes: Int64)] {
    after.map { stack, now in
        let old = before[stack] ?? (0, 0)
        return (now.objects - old.objects, now.bytes - old.bytes)
    }
}

/// Every test that changes the process-wide heap sampling rate lives under
/// this suite, so that no two of them run at once; it is itself part of the
/// serialized process-wide suite, away from the fault tests' allocation storms.
extension ProcessWideStateTests {
    @Suite("Heap sampling", .serialized) enum HeapSamplingTests {}
}
typealias HeapSamplingTests = ProcessWideStateTests.HeapSamplingTests
