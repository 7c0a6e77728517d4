import Glibc
import Pprof

/// The heap benchmarks. Costs of the malloc interposer are measured against
/// the same benchmark built without it (`--disable-default-traits`, the
/// HeapProfiling trait off: `--baseline`), each run in a child process of
/// its own, the variants alternating round by round in a rotating order.
enum Heap {
    // MARK: - child: alloc-only

    /// `alloc-only`: one child run. `rate` < 0 leaves the default rate.
    struct ChildOptions {
        var mode = "micro"
        var rate = -1
        var perBatch = 100_000
        var batches = 41
        var threads = 1
        var rounds = 60_000
        var runs = 3
        var countAllocations = false
    }

    static func childMain(_ o: ChildOptions) {
        if o.rate >= 0 { PprofServer.memoryProfileRate = o.rate }
        let interposed = PprofServer.isHeapProfilingAvailable ? 1 : 0
        switch o.mode {
        case "micro":
            let perBatch = o.rate == 1 ? max(1, o.perBatch / 20) : o.perBatch
            let d = AllocMicro.measure(perBatch: perBatch, batches: o.batches)
            printOut("RESULT \(interposed) \(PprofServer.memoryProfileRate) \(format(d.malloc.median, 3)) "
                     + "\(format(d.malloc.quantile(0.1), 3)) \(format(d.malloc.quantile(0.9), 3)) "
                     + "\(format(d.object.median, 3)) \(format(d.object.quantile(0.1), 3)) \(format(d.object.quantile(0.9), 3))")
        case "workload":
            var allocations: Int64 = 0
            if o.countAllocations {
                // At rate 1 every allocation is a sample; the handler's own
                // allocations are measured by a first pair of calls and subtracted.
                PprofServer.memoryProfileRate = 1
                let handler = PprofHandler()
                func sampled() -> Int64 {
                    let r = handler.respondBlocking(to: .init(method: "GET", path: "/debug/pprof/allocs", query: "debug=1"))
                    let lines = String(decoding: r.body, as: UTF8.self).split(separator: "\n").map(String.init)
                    return (keyValue("sampled_allocs", in: lines) ?? 0) + (keyValue("dropped_live_table_full", in: lines) ?? 0)
                        + (keyValue("dropped_stack_table_full", in: lines) ?? 0)
                }
                let a0 = sampled(), a1 = sampled()
                _ = AllocWorkload.run(threads: o.threads, rounds: o.rounds)
                let a2 = sampled()
                allocations = (a2 - a1) - (a1 - a0)
            }
            _ = AllocWorkload.run(threads: o.threads, rounds: max(o.threads, o.rounds / 10)) // warm-up
            var runs: [RunTimes] = []
            for _ in 0..<o.runs { runs.append(AllocWorkload.run(threads: o.threads, rounds: o.rounds)) }
            let cpu = Distribution(runs.map { Double($0.processCPUNanoseconds) })
            let wall = Distribution(runs.map { Double($0.wallNanoseconds) })
            let workers = Distribution(runs.map { Double($0.workerCPUNanoseconds) })
            printOut("RESULT \(interposed) \(PprofServer.memoryProfileRate) \(Int64(wall.median)) \(Int64(cpu.median)) "
                     + "\(Int64(workers.median)) \(runs[0].checksum) \(allocations)")
        default:
            fatal("--mode takes micro or workload")
        }
    }

    // MARK: - heap-overhead: (a) microbenchmarks and (b) workload throughput

    struct OverheadOptions {
        var baseline = ""
        var rounds = 15
        var workloadRounds = 11
        var threadCounts = [1, 2]
        var iterations = 30_000
        var summary: String?
    }

    /// A binary and a rate: one way to run a child.
    struct Variant {
        var name: String
        var binary: String
        var rate: Int
        var environment: [String] = []
        var wrapper: [String] = []
        var interposed: Bool
    }

    static func overhead(_ o: OverheadOptions) {
        let summary = Summary(path: o.summary)
        let me = ChildProcess.selfExecutable()
        guard access(o.baseline, X_OK) == 0 else { fatal("--baseline \(o.baseline) is not an executable") }
        let directory = ChildProcess.temporaryDirectory()
        let stderrPath = directory + "/stderr"
        defer { ChildProcess.removeDirectory(directory) }
        let noHeap = Variant(name: "no interposer", binary: o.baseline, rate: -1, interposed: false)
        let variants = [noHeap,
                        Variant(name: "interposed, rate 524288", binary: me, rate: 524288, interposed: true),
                        Variant(name: "interposed, rate 0", binary: me, rate: 0, interposed: true),
                        Variant(name: "interposed, rate 1", binary: me, rate: 1, interposed: true)]

        printOut("## heap-overhead (a): ns per malloc+free pair (16–256 B, ring of 64 live blocks) and per Swift "
                 + "class alloc+release (48 B), thread CPU time, median and 10th percentile of 41 batches per child; \(o.rounds) rounds "
                 + "of 4 children (rotating order); baseline \(o.baseline)")
        // Per variant and round: [malloc median, malloc p10, class median, class p10] in ns.
        var perRound: [[[Double]]] = Array(repeating: [], count: 4)
        for v in variants { _ = micro(v, stderrPath) } // warm-up: page cache, not counted
        for round in 0..<o.rounds {
            var results: [[Double]] = Array(repeating: [], count: 4)
            for i in 0..<4 {
                let index = (i + round) % 4
                results[index] = micro(variants[index], stderrPath)
            }
            var line = "round \(round + 1):"
            for index in 0..<4 {
                perRound[index].append(results[index])
                line += " \(variants[index].name): malloc+free \(format(results[index][0], 2)) ns (p10 "
                    + "\(format(results[index][1], 2))), class \(format(results[index][2], 2)) ns (p10 \(format(results[index][3], 2)));"
            }
            printOut(line)
        }
        let names = ["malloc", "object"]
        for index in 0..<4 {
            var text = "\(variants[index].name):"
            for (kind, name) in names.enumerated() {
                // Medians of the children's batch medians, and of their 10th
                // percentiles (the machine's quiet moments: these cores are
                // shared, and contention doubles some batches' times).
                let absolute = Distribution(perRound[index].map { $0[2 * kind] })
                let added = Distribution(perRound[index].indices.map { r in perRound[index][r][2 * kind] - perRound[0][r][2 * kind] })
                let quiet = Distribution(perRound[index].indices.map { r in
                    perRound[index][r][2 * kind + 1] - perRound[0][r][2 * kind + 1]
                })
                text += " \(name == "malloc" ? "malloc+free" : "class alloc+release") \(format(absolute.median, 2)) ns "
                    + "[\(format(absolute.min, 2)) … \(format(absolute.max, 2))], added \(format(added.median, 2)) "
                    + "[\(format(added.min, 2)) … \(format(added.max, 2))], added at p10 \(format(quiet.median, 2)) "
                    + "[\(format(quiet.min, 2)) … \(format(quiet.max, 2))];"
                let key = ["none", "default", "rate0", "rate1"][index]
                summary.record("heap.micro.\(name).\(key)", [absolute.median, absolute.min, absolute.max, Double(absolute.count),
                                                             added.median, added.min, added.max, quiet.median, quiet.min,
                                                             quiet.max, added.quantile(0.25), added.quantile(0.75)])
            }
            printOut(text)
        }

        printOut("## heap-overhead (b): allocation-heavy workload (\(o.iterations) rounds of arrays, a string-keyed "
                 + "dictionary, string building and a 17-object class graph per run), interposed at the default rate "
                 + "vs no interposer; each child: warm-up, median of 3 runs; \(o.workloadRounds) rounds")
        let count = ChildProcess.run([me, "alloc-only", "--mode", "workload", "--threads", "1", "--rounds", "\(o.iterations)",
                                      "--runs", "1", "--count-allocations", "1"], stderrPath: stderrPath)
            .resultFields("allocation count")
        let allocations = Double(count[6]) ?? .nan
        printOut("allocations per run (counted at rate 1): about \(format(allocations, 0)), "
                 + "\(format(allocations / Double(o.iterations), 1)) per round")
        summary.record("heap.workload.allocations", [allocations, Double(o.iterations)])
        let pair = [noHeap, variants[1]]
        for k in o.threadCounts {
            var cpuRatios: [Double] = [], wallRatios: [Double] = [], perAllocation: [Double] = [], baseCPU: [Double] = []
            for v in pair { _ = workload(v, threads: k, o.iterations, stderrPath) }
            for round in 0..<o.workloadRounds {
                var r: [RunTimes] = [RunTimes(wallNanoseconds: 0, processCPUNanoseconds: 0, workerCPUNanoseconds: 0, checksum: 0),
                                     RunTimes(wallNanoseconds: 0, processCPUNanoseconds: 0, workerCPUNanoseconds: 0, checksum: 0)]
                for i in 0..<2 {
                    let index = (i + round) % 2
                    r[index] = workload(pair[index], threads: k, o.iterations, stderrPath)
                }
                if r[0].checksum != r[1].checksum { fatal("the workload's checksum differs between builds") }
                let cpu = Double(r[1].processCPUNanoseconds) / Double(r[0].processCPUNanoseconds)
                let wall = Double(r[1].wallNanoseconds) / Double(r[0].wallNanoseconds)
                cpuRatios.append(cpu)
                wallRatios.append(wall)
                baseCPU.append(Double(r[0].processCPUNanoseconds))
                perAllocation.append(Double(r[1].processCPUNanoseconds - r[0].processCPUNanoseconds) / allocations)
                printOut("K=\(k) round \(round + 1): no interposer cpu \(ms(r[0].processCPUNanoseconds)) wall \(ms(r[0].wallNanoseconds)); "
                         + "interposed cpu \(ms(r[1].processCPUNanoseconds)) wall \(ms(r[1].wallNanoseconds)); "
                         + "cpu ratio \(format(cpu, 4)), wall ratio \(format(wall, 4))")
            }
            let c = Distribution(cpuRatios), w = Distribution(wallRatios), p = Distribution(perAllocation)
            printOut("K=\(k): cpu ratio median \(format(c.median, 4)) [\(format(c.min, 4)) … \(format(c.max, 4))], wall ratio "
                     + "median \(format(w.median, 4)) [\(format(w.min, 4)) … \(format(w.max, 4))], added CPU per allocation "
                     + "\(format(p.median, 2)) ns [\(format(p.min, 2)) … \(format(p.max, 2))]")
            summary.record("heap.workload.\(k).cpu", [c.median, c.min, c.max, Double(c.count), c.quantile(0.25), c.quantile(0.75)])
            summary.record("heap.workload.\(k).wall", [w.median, w.min, w.max, Double(w.count), w.quantile(0.25), w.quantile(0.75)])
            summary.record("heap.workload.\(k).per_allocation_ns", [p.median, p.min, p.max, Double(p.count),
                                                                     Distribution(baseCPU).median])
        }
        summary.write()
    }

    /// [malloc median, malloc p10, class median, class p10], ns per pair.
    private static func micro(_ v: Variant, _ stderrPath: String) -> [Double] {
        var argv = [v.binary, "alloc-only", "--mode", "micro"]
        if v.rate >= 0 { argv += ["--rate", "\(v.rate)"] }
        let f = ChildProcess.run(argv, stderrPath: stderrPath).resultFields("alloc-only micro")
        check(v, f)
        return [2, 3, 5, 6].map { Double(f[$0]) ?? .nan }
    }

    private static func workload(_ v: Variant, threads: Int, _ rounds: Int, _ stderrPath: String) -> RunTimes {
        workloadChild(v, threads: threads, rounds, stderrPath).times
    }

    private static func workloadChild(_ v: Variant, threads: Int, _ rounds: Int, _ stderrPath: String, runs: Int = 3)
        -> (times: RunTimes, tree: ChildOutput) {
        var argv = v.wrapper + [v.binary, "alloc-only", "--mode", "workload", "--threads", "\(threads)", "--rounds", "\(rounds)",
                                "--runs", "\(runs)"]
        if v.rate >= 0 { argv += ["--rate", "\(v.rate)"] }
        let out = ChildProcess.run(argv, environment: v.environment, stderrPath: stderrPath)
        let f = out.resultFields("alloc-only workload (\(v.name))")
        check(v, f)
        guard f.count >= 6, let wall = Int64(f[2]), let cpu = Int64(f[3]), let workers = Int64(f[4]),
              let checksum = UInt64(f[5]) else { fatal("bad child output: \(out.stdout)") }
        return (RunTimes(wallNanoseconds: wall, processCPUNanoseconds: cpu, workerCPUNanoseconds: workers, checksum: checksum), out)
    }

    private static func check(_ v: Variant, _ f: [Substring]) {
        let interposed = f.first == "1"
        if interposed != v.interposed {
            fatal("\(v.name): the child reports interposed=\(interposed): wrong --baseline binary?")
        }
    }

    // MARK: - heap-tools: (d) heaptrack and gperftools on the same workload

    struct ToolsOptions {
        var baseline = ""
        var rounds = 5
        var threadCounts = [1]
        /// Small: gperftools' heap profiler runs this ~100 times slower.
        var iterations = 5_000
        var runs = 1
        var tcmalloc = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so"
        var heaptrack = "heaptrack"
        var summary: String?
    }

    static func tools(_ o: ToolsOptions) {
        let summary = Summary(path: o.summary)
        let me = ChildProcess.selfExecutable()
        guard access(o.baseline, X_OK) == 0 else { fatal("--baseline \(o.baseline) is not an executable") }
        guard access(o.tcmalloc, R_OK) == 0 else { fatal("\(o.tcmalloc) is missing: apt-get install libgoogle-perftools-dev") }
        let directory = ChildProcess.temporaryDirectory()
        let stderrPath = directory + "/stderr"
        let output = directory + "/out"
        defer { ChildProcess.removeDirectory(output); ChildProcess.removeDirectory(directory) }
        let variants = [
            Variant(name: "unprofiled (no interposer)", binary: o.baseline, rate: -1, interposed: false),
            Variant(name: "swift-pprof, rate 524288", binary: me, rate: 524288, interposed: true),
            Variant(name: "swift-pprof, rate 1 (every allocation)", binary: me, rate: 1, interposed: true),
            Variant(name: "heaptrack", binary: o.baseline, rate: -1, wrapper: [o.heaptrack, "-o", output + "/heaptrack"],
                    interposed: false),
            Variant(name: "tcmalloc alone (no profiling)", binary: o.baseline, rate: -1,
                    environment: ["LD_PRELOAD=\(o.tcmalloc)"], interposed: false),
            Variant(name: "gperftools heap profiler (tcmalloc + HEAPPROFILE)", binary: o.baseline, rate: -1,
                    environment: ["LD_PRELOAD=\(o.tcmalloc)", "HEAPPROFILE=\(output)/gperf"], interposed: false),
        ]
        let keys = ["none", "pprof", "pprof_rate1", "heaptrack", "tcmalloc", "gperftools"]
        printOut("## heap-tools (d): the workload of heap-overhead (b), \(o.iterations) rounds per run, in child processes: "
                 + "unprofiled, swift-pprof (interposer), heaptrack, gperftools' heap profiler; each child: warm-up, then "
                 + "\(o.runs) timed run(s); \(o.rounds) rounds, rotating order")
        for k in o.threadCounts {
            var cpu: [[Double]] = Array(repeating: [], count: variants.count)
            var wall = cpu, tree = cpu
            func one(_ index: Int) -> (RunTimes, ChildOutput) {
                mkdir(output, 0o700)
                let r = workloadChild(variants[index], threads: k, o.iterations, stderrPath, runs: o.runs)
                ChildProcess.removeDirectory(output)
                return r
            }
            for index in variants.indices.dropLast() { _ = one(index) } // warm-up (not the slow gperftools)
            for round in 0..<o.rounds {
                var runs: [(RunTimes, ChildOutput)?] = Array(repeating: nil, count: variants.count)
                for i in variants.indices {
                    let index = (i + round) % variants.count
                    runs[index] = one(index)
                }
                let base = runs[0]!
                var line = "K=\(k) round \(round + 1):"
                for index in variants.indices {
                    let r = runs[index]!
                    if r.0.checksum != base.0.checksum { fatal("\(variants[index].name): the workload's checksum changed") }
                    cpu[index].append(Double(r.0.processCPUNanoseconds) / Double(base.0.processCPUNanoseconds))
                    wall[index].append(Double(r.0.wallNanoseconds) / Double(base.0.wallNanoseconds))
                    tree[index].append(Double(r.1.treeCPUNanoseconds) / Double(base.1.treeCPUNanoseconds))
                    line += " \(keys[index]) cpu \(ms(r.0.processCPUNanoseconds)) (whole tree \(ms(r.1.treeCPUNanoseconds)));"
                }
                printOut(line)
            }
            for index in variants.indices.dropFirst() {
                let c = Distribution(cpu[index]), w = Distribution(wall[index]), t = Distribution(tree[index])
                printOut("K=\(k) \(variants[index].name): workload CPU ratio \(format(c.median, 3)) [\(format(c.min, 3)) … "
                         + "\(format(c.max, 3))], wall ratio \(format(w.median, 3)), whole-process-tree CPU ratio "
                         + "\(format(t.median, 3)) [\(format(t.min, 3)) … \(format(t.max, 3))]")
                summary.record("heaptools.\(k).\(keys[index])", [c.median, c.min, c.max, Double(c.count), w.median,
                                                                 t.median, t.min, t.max])
            }
        }
        summary.write()
    }

    // MARK: - heap-endpoint: (c) /debug/pprof/heap with ~100k live samples

    struct EndpointOptions {
        var live = 100_000
        var stacks = 4096
        var requests = 21
        var summary: String?
    }

    static func endpoint(_ o: EndpointOptions) {
        let summary = Summary(path: o.summary)
        guard PprofServer.isHeapProfilingAvailable else { fatal("heap-endpoint needs the build with the interposer") }
        let server: PprofServer
        do { server = try PprofServer.start(.init(host: "127.0.0.1", port: 0)) } catch { fatal("pprof server: \(error)") }
        guard let port = server.port else { fatal("the pprof server has no port") }
        _ = get(port, "/debug/pprof/heap") // symbol tables read once, before the clock starts

        var levels = 0
        while (1 << levels) < o.stacks { levels += 1 }
        printOut("## heap-endpoint (c): rate 1, \(o.live) live malloc'd blocks (32–512 B) from \(o.stacks) distinct "
                 + "stacks (\(levels) levels of two functions); GET over loopback, \(o.requests) requests per figure")
        PprofServer.memoryProfileRate = 1
        let blocks = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: o.live)
        let built0 = monotonicNanoseconds()
        for i in 0..<o.live {
            let size = 32 &+ (i % 31) &* 16
            _ = stackPathA(levels, i % o.stacks) { blocks[i] = malloc(size) }
        }
        let buildNs = monotonicNanoseconds() - built0
        // The sampler's state right after building, read at rate 0 so that
        // the request itself adds no samples.
        PprofServer.memoryProfileRate = 0
        let state = DecodedProfile(gzippedBody: get(port, "/debug/pprof/heap").body).comments
        let live = Double(keyValue("live_samples", in: state) ?? -1)
        let dropped = Double(keyValue("dropped_live_table_full", in: state) ?? -1)
        let stacks = Double(keyValue("stacks", in: state) ?? -1)
        printOut("built in \(ms(buildNs)): live_samples \(Int(live)), dropped (live table bucket full) \(Int(dropped)), "
                 + "stacks \(Int(stacks))")
        summary.record("heap.endpoint.built", [Double(o.live), Double(o.stacks), live, dropped, stacks])
        PprofServer.memoryProfileRate = 1

        func series(_ target: String, key: String, text: Bool) {
            let first = get(port, target)
            var times: [Double] = [], cpu: [Double] = []
            var last = first
            for _ in 0..<o.requests {
                // This process does nothing else meanwhile: its CPU time
                // during the request is the server's work (and the client's
                // reading), a figure the other tenants' load does not move much.
                let c0 = processCPUNanoseconds()
                last = get(port, target)
                cpu.append(Double(processCPUNanoseconds() - c0) / 1e6)
                times.append(Double(last.nanoseconds) / 1e6)
            }
            let lines: [String]
            var samples = 0
            if text {
                lines = String(decoding: last.body, as: UTF8.self).split(separator: "\n").map(String.init)
                samples = lines.filter { $0.contains(" @ 0x") || $0.contains(" @0x") }.count
            } else {
                let profile = DecodedProfile(gzippedBody: last.body)
                lines = profile.comments
                samples = profile.records
            }
            let live = Double(keyValue("live_samples", in: lines) ?? -1)
            let stacks = Double(keyValue("stacks", in: lines) ?? -1)
            let dropped = Double(keyValue("dropped_live_table_full", in: lines) ?? -1)
            let d = Distribution(times), c = Distribution(cpu)
            printOut("GET \(target): median \(format(d.median, 1)) ms, p90 \(format(d.quantile(0.9), 1)), "
                     + "CPU median \(format(c.median, 1)) ms (p90 \(format(c.quantile(0.9), 1))), "
                     + "[\(format(d.min, 1)) … \(format(d.max, 1))]; first \(format(Double(first.nanoseconds) / 1e6, 1)) ms; "
                     + "\(last.body.count) bytes, \(samples) samples; live_samples \(Int(live)), stacks \(Int(stacks)), "
                     + "dropped (live table full) \(Int(dropped))")
            summary.record("heap.endpoint.\(key)", [d.median, d.quantile(0.9), d.min, d.max, Double(d.count), live,
                                                    stacks, dropped, Double(first.nanoseconds) / 1e6,
                                                    Double(last.body.count), Double(samples), c.median, c.quantile(0.9)])
        }
        series("/debug/pprof/heap", key: "proto", text: false)
        series("/debug/pprof/heap?debug=1", key: "text", text: true)
        // The same live samples, read while the rate is back at its default.
        PprofServer.memoryProfileRate = 524288
        series("/debug/pprof/heap", key: "proto_default_rate", text: false)
        for i in 0..<o.live { free(blocks[i]) }
        blocks.deallocate()
        server.stop()
        summary.write()
    }

    private static func get(_ port: Int, _ target: String) -> HTTPGetResult {
        let r = httpGet(port: port, target: target)
        if r.status != 200 { fatal("GET \(target): status \(r.status): \(String(decoding: r.body.prefix(200), as: UTF8.self))") }
        return r
    }

    private static func ms(_ ns: Int64) -> String { format(Double(ns) / 1e6, 1) + " ms" }
}

// Two different functions, one per bit of `path`, so each path is a distinct
// stack (return addresses in A or B at every level). Different arithmetic
// after each call keeps them from being merged or turned into loops.
@inline(never)
func stackPathA(_ level: Int, _ path: Int, _ leaf: () -> Void) -> Int {
    if level == 0 { leaf(); return 1 }
    let r = path & 1 == 0 ? stackPathA(level - 1, path >> 1, leaf) : stackPathB(level - 1, path >> 1, leaf)
    return mix(UInt64(truncatingIfNeeded: r), level) == 0 ? 0 : r &+ level
}

@inline(never)
func stackPathB(_ level: Int, _ path: Int, _ leaf: () -> Void) -> Int {
    if level == 0 { leaf(); return 2 }
    let r = path & 1 == 0 ? stackPathA(level - 1, path >> 1, leaf) : stackPathB(level - 1, path >> 1, leaf)
    return Int(truncatingIfNeeded: mix(UInt64(truncatingIfNeeded: r &* 3), level &+ 7)) ^ level
}
