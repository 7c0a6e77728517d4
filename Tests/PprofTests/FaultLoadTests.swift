import CPprof
import Glibc
import Synchronization
import Testing

@testable import Pprof

/// Allocates and frees in a loop: C malloc family and Swift objects and
/// arrays of many sizes, some kept alive for a while.
@inline(never) func faultAllocationLoop(until stop: FaultFlag, seed: UInt64, operations: FaultCounter) {
    var random = SeededGenerator(seed: seed)
    var kept: [UnsafeMutableRawPointer?] = Array(repeating: nil, count: 256)
    var arrays: [[UInt64]] = Array(repeating: [], count: 64)
    var count = 0
    while !stop.isSet {
        for _ in 0..<256 {
            let slot = Int(random.next() % 256)
            free(kept[slot])
            let size = Int(1 << (random.next() % 17)) + Int(random.next() % 64)
            switch random.next() % 4 {
            case 0: kept[slot] = malloc(size)
            case 1: kept[slot] = calloc(1, size)
            case 2: kept[slot] = realloc(malloc(16), size)
            default:
                var p: UnsafeMutableRawPointer?
                kept[slot] = posix_memalign(&p, 64, size) == 0 ? p : nil
            }
            if let p = kept[slot] { p.storeBytes(of: UInt8(truncatingIfNeeded: count), as: UInt8.self) }
            arrays[Int(random.next() % 64)] = Array(repeating: random.next(), count: Int(random.next() % 2048))
            count += 1
        }
        operations.add(256)
    }
    kept.forEach { free($0) }
    if arrays.count == 1 { print(arrays) }
}

/// Requests against a server, from several client threads, checked strictly.
struct EndpointHammer {
    struct Tally: Sendable {
        var requests = 0
        var byStatus: [Int: Int] = [:]
        var failures: [String] = []
        var slowest = 0.0
        /// The slowest answer per request, for the report.
        var slowestByTarget: [String: Double] = [:]
    }

    /// A request and whether its answer is acceptable.
    static func check(_ target: String, method: String, _ r: StrictResponse) -> String? {
        switch r.status {
        case 200:
            let type = r.header("Content-Type") ?? ""
            if method == "HEAD" { return r.body.isEmpty ? nil : "HEAD with a body" }
            if type == "application/octet-stream" {
                guard let p = try? DecodedProfile(gzipped: r.body) else { return "\(target): 200 but the body does not gunzip and decode" }
                return p.sampleTypes.isEmpty ? "\(target): no sample types" : nil
            }
            if type.hasPrefix("text/plain") { return r.body.isEmpty && !target.contains("cmdline") ? "\(target): empty text" : nil }
            if type.hasPrefix("text/html") { return r.text.contains("</html>") ? nil : "\(target): truncated index" }
            return "\(target): 200 with Content-Type \(type)"
        case 301, 400, 404, 405:
            return nil // deliberate answers to the requests that ask for them
        case 503:
            return r.body.isEmpty && r.header("Retry-After") == "1" ? nil : "\(target): 503 \(r.text)"
        default:
            return "\(target): unexpected \(r.status) \(r.text.prefix(200))"
        }
    }

    /// What a client asks for, chosen at random: every endpoint, in every
    /// format, a few deliberate errors, and one CPU and one delta profile now and then.
    static let targets: [(method: String, target: String, weight: Int)] = [
        ("GET", "/debug/pprof/", 3), ("GET", "/debug/pprof/cmdline", 3), ("HEAD", "/debug/pprof/cmdline", 1),
        ("GET", "/debug/pprof/symbol?0x1000+0x2000", 2), ("POST", "/debug/pprof/symbol", 2),
        ("GET", "/debug/pprof/heap", 3), ("GET", "/debug/pprof/heap?debug=1", 2), ("GET", "/debug/pprof/allocs", 2),
        ("GET", "/debug/pprof/goroutine", 3), ("GET", "/debug/pprof/goroutine?debug=1", 2),
        ("GET", "/debug/pprof/goroutine?debug=2", 2), ("GET", "/debug/pprof/threadcreate", 2),
        ("GET", "/debug/pprof/threadcreate?debug=1", 1), ("GET", "/debug/pprof/block", 1), ("GET", "/debug/pprof/mutex?debug=1", 1),
        ("GET", "/debug/pprof/profile?seconds=1", 1), ("GET", "/debug/pprof/heap?seconds=1", 1),
        ("GET", "/debug/pprof/nope", 1), ("DELETE", "/debug/pprof/heap", 1), ("GET", "/debug/pprof/block?seconds=x", 1),
        ("GET", "/debug/pprof/profile?seconds=999", 1), ("GET", "/debug/pprof", 1),
    ]

    /// `clients` threads send requests for `seconds`; returns the tally.
    static func run(port: Int, clients: Int, seconds: Double, seed: UInt64) -> Tally {
        let tally = Mutex(Tally())
        let weighted = targets.flatMap { Array(repeating: ($0.method, $0.target), count: $0.weight) }
        let end = monotonicSeconds() + seconds
        var threads: [pthread_t] = []
        for c in 0..<clients {
            guard let t = faultSpawn({
                var random = SeededGenerator(seed: seed &+ UInt64(c))
                while monotonicSeconds() < end {
                    let (method, target) = weighted[Int(random.next() % UInt64(weighted.count))]
                    let body = method == "POST" ? Array("0x1000+0x2000".utf8) : []
                    let t0 = monotonicSeconds()
                    let problem: String?
                    var status = 0
                    do {
                        let r = try TestHTTP.request(port: port, method: method, target: target, body: body, timeoutSeconds: 30)
                        status = r.status
                        problem = check(target, method: method, r)
                    } catch {
                        problem = "\(method) \(target): \(error)"
                    }
                    let took = monotonicSeconds() - t0
                    if status == 503 { usleep(100_000) } // Retry-After, shortened: keep the pressure on
                    tally.withLock { t in
                        t.requests += 1
                        t.byStatus[status, default: 0] += 1
                        t.slowest = max(t.slowest, took)
                        t.slowestByTarget["\(method) \(target)", default: 0] = max(t.slowestByTarget["\(method) \(target)", default: 0], took)
                        if let problem { t.failures.append(problem) }
                    }
                }
            }) else { continue }
            threads.append(t)
        }
        threads.forEach { pthread_join($0, nil) }
        return tally.withLock { $0 }
    }
}

extension ProcessWideStateTests {
    @Suite("Faults: load", .serialized)
    struct FaultLoadTests {
        @Test("profiling during heavy multi-threaded allocation: CPU, heap, allocs and dumps all answer")
        func profilingDuringHeavyAllocation() throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let port = try #require(server.port)
            // Symbols and DWARF load on first use: once, before the load.
            _ = try TestHTTP.request(port: port, target: "/debug/pprof/heap?debug=1", timeoutSeconds: 60)
            _ = try TestHTTP.request(port: port, target: "/debug/pprof/goroutine?debug=2", timeoutSeconds: 60)
            let stop = FaultFlag()
            let operations = FaultCounter()
            var allocators: [pthread_t] = []
            for i in 0..<3 {
                allocators.append(try #require(faultSpawn {
                    cpprof_set_thread_name("flt-alloc-\(i)")
                    faultAllocationLoop(until: stop, seed: UInt64(i) &* 0x9E37, operations: operations)
                }))
            }
            defer {
                stop.set()
                allocators.forEach { pthread_join($0, nil) }
            }
            usleep(200_000)
            let cpu = Mutex<Result<StrictResponse, any Error>?>(nil)
            let cpuThread = try #require(faultSpawn {
                let r = Result { try TestHTTP.request(port: port, target: "/debug/pprof/profile?seconds=2", timeoutSeconds: 30) }
                cpu.withLock { $0 = r }
            })
            var others: [(String, StrictResponse)] = []
            for target in ["/debug/pprof/heap", "/debug/pprof/allocs", "/debug/pprof/goroutine?debug=2"] {
                others.append((target, try TestHTTP.request(port: port, target: target, timeoutSeconds: 30)))
            }
            pthread_join(cpuThread, nil)
            let cpuResponse = try #require(try cpu.withLock { $0 }?.get())
            stop.set()
            allocators.forEach { pthread_join($0, nil) }
            allocators = []

            for (target, r) in others + [("/debug/pprof/profile?seconds=2", cpuResponse)] {
                #expect(r.status == 200, "\(target): \(r.status)")
                #expect(EndpointHammer.check(target, method: "GET", r) == nil, "\(target)")
            }
            let p = try DecodedProfile(gzipped: cpuResponse.body)
            #expect(p.samples.contains { p.functionNames($0).contains { $0.contains("faultAllocationLoop") } },
                    "no CPU sample in the allocating threads")
            if HeapSampler.isAvailable {
                let heap = try DecodedProfile(gzipped: others[1].1.body)
                #expect(heap.samples.contains { heap.functionNames($0).contains { $0.contains("faultAllocationLoop") } },
                        "no sampled allocation from the allocating threads")
            }
            #expect(operations.count > 10_000)
            print("heavy allocation: \(operations.count) allocator calls on 3 threads during the profiles")
        }

        @Test("every endpoint hammered by 16 concurrent clients for 5 s while the app works")
        func hammerEveryEndpoint() throws {
            // A few more slots than clients: a client reconnects a moment
            // before the server has released its previous connection.
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0, maxProfileSeconds: 30, maxConnections: 24))
            defer { server.stop() }
            let port = try #require(server.port)
            // Symbol tables and DWARF are loaded on first use, under one lock:
            // the first scrape of a process pays for that; this measures the rest.
            for (method, target, _) in EndpointHammer.targets where !target.contains("seconds=") {
                _ = try TestHTTP.request(port: port, method: method, target: target,
                                          body: method == "POST" ? Array("0x1000".utf8) : [], timeoutSeconds: 60)
            }
            // The app: one thread computing, one allocating (two cores in all).
            let workload = MeasuredWorkload()
            workload.startGammaOnly()
            let stop = FaultFlag()
            let operations = FaultCounter()
            let allocator = try #require(faultSpawn { faultAllocationLoop(until: stop, seed: 7, operations: operations) })
            defer {
                workload.stop()
                stop.set()
                pthread_join(allocator, nil)
            }
            let seconds = Double(environmentInt("PPROF_HAMMER_SECONDS", default: 5))
            let started = monotonicSeconds()
            let tally = EndpointHammer.run(port: port, clients: 16, seconds: seconds,
                                           seed: SeededGenerator.seed(fromEnvironment: "PPROF_FUZZ_SEED", default: 0x4A11))
            let elapsed = monotonicSeconds() - started

            #expect(tally.failures.isEmpty, "\(tally.failures.count) bad answers:\n\(tally.failures.prefix(8).joined(separator: "\n"))")
            #expect(tally.requests >= 32, "only \(tally.requests) requests in \(seconds) s")
            let refused = tally.byStatus[503] ?? 0
            #expect(refused * 5 < tally.requests, "\(refused) of \(tally.requests) refused with 503")
            #expect(elapsed < seconds + 90, "the hammer took \(elapsed) s: something hung")
            // Afterwards: still serving, no connection left, sampling stopped.
            #expect(try TestHTTP.request(port: port, target: "/debug/pprof/cmdline").status == 200)
            #expect(waitUntil(seconds: 10) { server.activeConnectionCount == 0 })
            #expect(waitUntil(seconds: 5) { cpuStats().mode == 0 })
            #expect(sigprofTimerCount() == 0)
            print("hammer, slowest by request: \(tally.slowestByTarget.sorted { $0.value > $1.value }.prefix(6).map { "\($0.key) \(Int($0.value * 1000)) ms" })")
            print("hammer: \(tally.requests) requests from 16 clients in \(Int(elapsed * 1000)) ms, slowest \(Int(tally.slowest * 1000)) ms, statuses \(tally.byStatus.sorted { $0.key < $1.key })")
        }
    }
}

extension HeapSamplingTests {
    @Suite("Faults: heap sampling under load", .serialized,
           .enabled(if: HeapSampler.isAvailable, "built without the HeapProfiling trait"))
    struct FaultHeapLoadTests {
        // Rate 4096 samples most of these allocations (rate 1 would slow every
        // test running beside this one to a crawl, the profiler's own included).
        @Test("heap profiles taken while threads allocate, sampled every 4 KiB")
        func highRateUnderLoad() throws {
            // Symbols and DWARF load on first use: once, before the load.
            _ = HeapProfile.allocs.text(debug: 1, symbols: Symbolizer.shared)
            let previous = HeapSampler.rate
            HeapSampler.rate = 4096
            defer { HeapSampler.rate = previous }
            let stop = FaultFlag()
            let operations = FaultCounter()
            var allocators: [pthread_t] = []
            for i in 0..<2 {
                allocators.append(try #require(faultSpawn {
                    faultAllocationLoop(until: stop, seed: 100 + UInt64(i), operations: operations)
                }))
            }
            defer {
                stop.set()
                allocators.forEach { pthread_join($0, nil) }
            }
            usleep(200_000)
            let start = monotonicSeconds()
            var profiles = 0
            for _ in 0..<3 {
                let heap = HeapProfile.heap.collect()
                let decoded = try DecodedProfile(gzipped: try heap.gzipped(symbols: Symbolizer.shared))
                #expect(decoded.samples.contains { decoded.functionNames($0).contains { $0.contains("faultAllocationLoop") } })
                #expect(HeapProfile.allocs.text(debug: 1, symbols: Symbolizer.shared).hasPrefix("heap profile: "))
                profiles += 1
            }
            let took = monotonicSeconds() - start
            stop.set()
            allocators.forEach { pthread_join($0, nil) }
            allocators = []
            let stats = HeapSampler.stats()
            // A hang detector: on 2 shared cores, beside other tests, profiles
            // get a fair share of the CPU and no more (typically 1-5 s in all).
            #expect(took < 30, "3 heap profiles took \(took) s")
            #expect(operations.count > 1000)
            #expect(stats.sampledAllocs > 0)
            print("heap at rate 4096: \(operations.count) allocator calls, \(profiles) heap profiles in \(Int(took * 1000)) ms, sampled \(stats.sampledAllocs), dropped \(stats.droppedLiveTableFull + stats.droppedStackTableFull + stats.droppedNoMemory)")
        }
    }
}
