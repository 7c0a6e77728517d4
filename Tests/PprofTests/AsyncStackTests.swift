import Dispatch
import Foundation
import Synchronization
import Testing
@testable import Pprof

// Logical call stacks of async code (issue 9): a leaf reached through
// awaiting async callers, run in a plain Task, a task-group child and across
// an actor hop, must be profiled under all its callers, in order.

/// Tasks that run `entry → route → middle → leaf → asyncSpin` until stopped.
final class AsyncWorkload: Sendable {
    let sink = Atomic<UInt64>(0)
    let leafRuns = Atomic<Int>(0)
    private let stopFlag = Atomic<Bool>(false)
    let hop = AsyncHopActor()

    var stopped: Bool { stopFlag.load(ordering: .relaxed) }

    /// One task of each kind: plain, task-group child, and through an actor.
    func start() -> [Task<Void, Never>] {
        [Task.detached { await asyncPlainEntry(self) },
         Task.detached {
             await withTaskGroup(of: Void.self) { group in
                 group.addTask { await asyncGroupEntry(self) }
             }
         },
         Task.detached { await asyncActorEntry(self) }]
    }

    func stop(_ tasks: [Task<Void, Never>]) async {
        stopFlag.store(true, ordering: .relaxed)
        for task in tasks { await task.value }
    }
}

actor AsyncHopActor {
    /// Runs on the actor's executor: the chain crosses the hop.
    func route(_ w: AsyncWorkload) async {
        while !w.stopped {
            await asyncMiddleLayer(w)
            await Task.yield()
        }
    }
}

/// The synchronous leaf: a few milliseconds of arithmetic.
@inline(never) func asyncSpin(_ w: AsyncWorkload) {
    var x = w.sink.load(ordering: .relaxed) | 1
    for i in 0..<2_000_000 { x = x &* 6364136223846793005 &+ UInt64(i) }
    w.sink.store(x, ordering: .relaxed)
}

@inline(never) func asyncLeafWork(_ w: AsyncWorkload) async {
    asyncSpin(w)
    w.leafRuns.add(1, ordering: .relaxed)
}

/// The line of the await in asyncMiddleLayer, where its resume point maps.
let asyncMiddleAwaitLine = #line + 2
@inline(never) func asyncMiddleLayer(_ w: AsyncWorkload) async {
    await asyncLeafWork(w)
}

@inline(never) func asyncRouteHandler(_ w: AsyncWorkload) async {
    while !w.stopped {
        await asyncMiddleLayer(w)
        await Task.yield() // three tasks share the pool's threads
    }
}

@inline(never) func asyncPlainEntry(_ w: AsyncWorkload) async { await asyncRouteHandler(w) }
@inline(never) func asyncGroupEntry(_ w: AsyncWorkload) async { await asyncRouteHandler(w) }
@inline(never) func asyncActorEntry(_ w: AsyncWorkload) async { await w.hop.route(w) }

/// The callers a leaf sample must show, innermost first, per kind of task.
let asyncExpectedChains: [String: [String]] = [
    "plain": ["asyncLeafWork", "asyncMiddleLayer", "asyncRouteHandler", "asyncPlainEntry"],
    "group": ["asyncLeafWork", "asyncMiddleLayer", "asyncRouteHandler", "asyncGroupEntry"],
    "actor": ["asyncLeafWork", "asyncMiddleLayer", "AsyncHopActor.route", "asyncActorEntry"],
]

/// Which expected chain `functions` (leaf first) shows in order, with the
/// executor frames, if any, only rootwards of it.
func asyncChainKind(_ functions: [String]) -> String? {
    for (kind, chain) in asyncExpectedChains {
        var at = 0
        var ok = true
        for name in chain {
            guard let i = functions[at...].firstIndex(where: { $0.contains(name) }) else { ok = false; break }
            at = i + 1
        }
        let executor = functions.firstIndex { $0.contains("runJobInEstablishedExecutorContext") }
        if ok && (executor == nil || executor! >= at) { return kind }
    }
    return nil
}

/// A dumped stack's function names, leaf first (return addresses looked up
/// minus one, as pprof does).
func dumpedFunctions(_ stack: [UInt64]) -> [String] {
    stack.enumerated().map { i, pc in Symbolizer.shared.frames(at: i == 0 ? pc : pc &- 1).last?.function ?? "" }
}

/// Runs blocking work off the cooperative pool, whose threads the workload needs.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

extension ProcessWideStateTests {
    @Suite("Async call stacks", .serialized)
    struct AsyncStackTests {
        @Test("a CPU profile shows the async leaf under every awaiting caller, in order, at the await's line")
        func cpuProfileShowsAwaitingCallers() async throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let workload = AsyncWorkload()
            let tasks = workload.start()
            let port = server.port!
            let response = try await offThePool { try TestHTTP.request(port: port, target: "/debug/pprof/profile?seconds=5") }
            await workload.stop(tasks)
            #expect(response.status == 200)
            let file = try GoPprof.temporaryFile(response.body, name: "async-cpu")
            defer { try? FileManager.default.removeItem(atPath: file) }
            let output = try GoPprof.run(["-traces", file])
            var leafSamples = 0, withChain = 0
            var kinds: [String: Int] = [:]
            for trace in GoPprof.parseTraces(output) where trace.functions.first?.contains("asyncSpin") == true {
                let n = Int(nanosecondsOf(trace.value) / 10_000_000)
                leafSamples += n
                if let kind = asyncChainKind(trace.functions) {
                    withChain += n
                    kinds[kind, default: 0] += n
                }
            }
            #expect(leafSamples >= 20, "too few leaf samples (\(leafSamples)):\n\(output.prefix(3000))")
            #expect(Double(withChain) >= 0.9 * Double(leafSamples),
                    "\(withChain) of \(leafSamples) leaf samples show the whole chain:\n\(output.prefix(6000))")
            for kind in asyncExpectedChains.keys {
                #expect(kinds[kind, default: 0] > 0, "no sample through the \(kind) task: \(kinds)")
            }
            // Resume functions read as the function they resume into...
            #expect(!output.contains("resume partial function"), "\(output.prefix(3000))")
            #expect(output.contains("async_chains="), "the profile's comments lack the chain counters")
            // ...at the line of the await they resume after (pprof looks up
            // return addresses minus one: the walk reports resume + 1).
            let lines = try GoPprof.run(["-traces", "-lines", file])
            let middle = lines.split(separator: "\n").filter { $0.contains("asyncMiddleLayer") }
            #expect(!middle.isEmpty && middle.allSatisfy { $0.contains("AsyncStackTests.swift:\(asyncMiddleAwaitLine)") },
                    "asyncMiddleLayer frames: \(Set(middle.map { $0.trimmingCharacters(in: .whitespaces) }))")
        }

        @Test("synchronous code keeps exactly its own stack: nothing is spliced into it")
        func syncStacksUnchanged() async throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let stop = FaultFlag()
            let thread = try #require(faultSpawn { syncOnlyOuter(stop) })
            let port = server.port!
            let response = try await offThePool { try TestHTTP.request(port: port, target: "/debug/pprof/profile?seconds=2") }
            stop.set()
            pthread_join(thread, nil)
            #expect(response.status == 200)
            let file = try GoPprof.temporaryFile(response.body, name: "sync-cpu")
            defer { try? FileManager.default.removeItem(atPath: file) }
            let output = try GoPprof.run(["-traces", file])
            var leafSamples = 0, exact = 0
            for trace in GoPprof.parseTraces(output) where trace.functions.first?.contains("syncOnlyLeaf") == true {
                let n = Int(nanosecondsOf(trace.value) / 10_000_000)
                leafSamples += n
                let f = trace.functions
                // Leaf, its two callers, then the thread's entry: no frame in between,
                // and nothing of the async machinery anywhere.
                if f.count > 3, f[1].contains("syncOnlyMiddle"), f[2].contains("syncOnlyOuter"),
                   !f.contains(where: { $0.contains("runJobInEstablishedExecutorContext") || $0.contains("resume partial") }) {
                    exact += n
                }
            }
            #expect(leafSamples >= 20, "too few leaf samples (\(leafSamples)):\n\(output.prefix(3000))")
            #expect(Double(exact) >= 0.95 * Double(leafSamples), "\(exact) of \(leafSamples) exact:\n\(output.prefix(4000))")
        }

        @Test("a thread dump of a pool thread running the task shows the chain")
        func threadDumpShowsChain() async throws {
            let workload = AsyncWorkload()
            let tasks = workload.start()
            var found: [String] = []
            // The dump catches a pool thread inside asyncSpin most of the time; retry a few times.
            for _ in 0..<20 where found.isEmpty {
                let threads = try await offThePool { ThreadDumper.dump() }
                for thread in threads where found.isEmpty {
                    let names = dumpedFunctions(thread.stack)
                    if names.first?.contains("asyncSpin") == true || names.prefix(3).contains(where: { $0.contains("asyncSpin") }) {
                        found = names
                    }
                }
            }
            await workload.stop(tasks)
            #expect(!found.isEmpty, "no dump caught a pool thread in asyncSpin")
            if !found.isEmpty {
                let fromLeaf = Array(found.drop { !$0.contains("asyncSpin") })
                #expect(asyncChainKind(fromLeaf) != nil, "dumped stack: \(found)")
            }
        }

        @Test("thousands of short tasks while sampling at 1000 Hz and dumping repeatedly: no crash, no hang")
        func churnOfShortTasks() async throws {
            let state = AsyncChurnState()
            let before = AsyncStacks.stats()
            let spawner = Task.detached { await state.spawnUntilStopped() }
            let dumper = Task.detached { try await offThePool { state.dumpUntilStopped() } }
            let profile = try await offThePool { try faultCPUProfile(seconds: 3, hz: 1000) }
            // Tasks and dumps go on until a thousand tasks have finished: how
            // long that takes depends on the machine (under ThreadSanitizer on
            // a loaded machine, 400 in the profile's 3 s), so the bound is
            // only a hang detector.
            let enough = try await offThePool { waitUntil(seconds: 300) { state.finished.load(ordering: .relaxed) >= 1000 } }
            state.stop.store(true, ordering: .relaxed)
            await spawner.value
            let dumps = try await dumper.value
            let after = AsyncStacks.stats()
            let finished = state.finished.load(ordering: .relaxed)
            #expect(enough && finished >= 1000, "only \(finished) tasks finished")
            #expect(dumps >= 3, "only \(dumps) dumps")
            #expect(profile.totalSamples > 0)
            #expect(after.chains > before.chains, "no async chain was followed")
            print("async churn: \(finished) tasks, \(dumps) dumps, \(profile.totalSamples) samples, "
                  + "\(after.chains &- before.chains) chains (\(after.cut &- before.cut) cut)")
        }

        @Test("a task blocked in a system call is dumped with its awaiting callers, without a signal")
        func blockedTaskDumpShowsChain() async throws {
            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)
            let (readEnd, writeEnd) = (fds[0], fds[1])
            defer { close(readEnd); close(writeEnd) }
            let task = Task.detached { await asyncBlockedRoute(readEnd) }
            var found: [String] = []
            for _ in 0..<40 where found.isEmpty {
                let threads = try await offThePool { ThreadDumper.dump() }
                for thread in threads where found.isEmpty {
                    let names = dumpedFunctions(thread.stack)
                    if names.contains(where: { $0.contains("asyncBlockingRead") }) { found = names }
                }
                if found.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
            }
            var byte: UInt8 = 1
            _ = write(writeEnd, &byte, 1)
            let got = await task.value
            #expect(got == 1, "the blocked read returned \(got): the dump disturbed it")
            let chain = Array(found.drop { !$0.contains("asyncBlockingRead") })
            let middle = chain.firstIndex { $0.contains("asyncBlockedMiddle") }
            let route = chain.firstIndex { $0.contains("asyncBlockedRoute") }
            #expect(middle != nil && route != nil && middle! < route!, "dumped stack: \(found)")
        }

        @Test("goroutine?debug=2 shows the awaiting callers of a running task")
        func goroutineDebug2ShowsChain() async throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let workload = AsyncWorkload()
            let tasks = workload.start()
            let port = server.port!
            var text = ""
            for _ in 0..<20 where !text.contains("asyncSpin") {
                let r = try await offThePool { try TestHTTP.request(port: port, target: "/debug/pprof/goroutine?debug=2") }
                text = String(decoding: r.body, as: UTF8.self)
            }
            await workload.stop(tasks)
            let block = text.components(separatedBy: "\n\n").first { $0.contains("asyncSpin") } ?? ""
            let functions = block.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("\t") }
            #expect(asyncChainKind(Array(functions.drop { !$0.contains("asyncSpin") })) != nil,
                    "no goroutine block shows the chain:\n\(block)")
        }
    }
}

/// A synchronous thread: outer → middle → leaf, spinning until stopped.
@inline(never) func syncOnlyLeaf(_ seed: UInt64) -> UInt64 {
    var x = seed | 1
    for i in 0..<2_000_000 { x = x &* 6364136223846793005 &+ UInt64(i) }
    return x
}

@inline(never) func syncOnlyMiddle(_ seed: UInt64) -> UInt64 { syncOnlyLeaf(seed) &+ 1 }

@inline(never) func syncOnlyOuter(_ stop: FaultFlag) {
    var x: UInt64 = workloadSeed
    while !stop.isSet { x = syncOnlyMiddle(x) }
    syncOnlySink.store(x, ordering: .relaxed)
}

let syncOnlySink = Atomic<UInt64>(0)

/// A task whose innermost function blocks a pool thread in `read` until a
/// byte arrives (the "blocking call in async code" a wall profile must find).
@inline(never) func asyncBlockingRead(_ fd: Int32) -> Int {
    var byte: UInt8 = 0
    return read(fd, &byte, 1)
}

@inline(never) func asyncBlockedLeaf(_ fd: Int32) async -> Int { asyncBlockingRead(fd) }
@inline(never) func asyncBlockedMiddle(_ fd: Int32) async -> Int { await asyncBlockedLeaf(fd) }
@inline(never) func asyncBlockedRoute(_ fd: Int32) async -> Int { await asyncBlockedMiddle(fd) }

@inline(never) func asyncChurnInner(_ seed: UInt64) async -> UInt64 {
    var x = seed | 1
    for i in 0..<5_000 { x = x &* 6364136223846793005 &+ UInt64(i) }
    return x &+ UInt64([x, seed].count)
}

@inline(never) func asyncChurnOuter(_ seed: UInt64) async -> UInt64 {
    await asyncChurnInner(seed) ^ (await asyncChurnInner(seed &+ 1))
}

/// Short tasks, created and finished in rounds, and thread dumps, until stopped.
final class AsyncChurnState: Sendable {
    let stop = Atomic<Bool>(false)
    let finished = Atomic<Int>(0)
    let sink = Atomic<UInt64>(0)

    func spawnUntilStopped() async {
        var round: UInt64 = 0
        while !stop.load(ordering: .relaxed) {
            round += 1
            let base = round &* 64
            await withTaskGroup(of: UInt64.self) { group in
                for i in 0..<32 { group.addTask { await asyncChurnOuter(base &+ UInt64(i)) } }
                for await value in group {
                    sink.wrappingAdd(value, ordering: .relaxed)
                    finished.add(1, ordering: .relaxed)
                }
            }
            let plain = Task { await asyncChurnOuter(base) }
            sink.wrappingAdd(await plain.value, ordering: .relaxed)
            finished.add(1, ordering: .relaxed)
        }
    }

    func dumpUntilStopped() -> Int {
        var dumps = 0
        while !stop.load(ordering: .relaxed) {
            if !ThreadDumper.dump(deadlineMilliseconds: 200).isEmpty { dumps += 1 }
            usleep(10_000)
        }
        return dumps
    }
}

@inline(never) func asyncHeapLeaf(count: Int) async -> [UnsafeMutableRawPointer] {
    (0..<count).map { _ in blackHoleAllocation(malloc(4096)!) }
}

@inline(never) func asyncHeapMiddle(count: Int) async -> [UnsafeMutableRawPointer] {
    await asyncHeapLeaf(count: count)
}

@inline(never) func asyncHeapEntry(count: Int) async -> [UnsafeMutableRawPointer] {
    await asyncHeapMiddle(count: count)
}

/// Keeps raw pointers across a task boundary.
struct AsyncPointers: @unchecked Sendable { var pointers: [UnsafeMutableRawPointer] }

extension HeapSamplingTests {
    @Suite("Async call stacks in heap profiles", .serialized,
           .enabled(if: PprofServer.isHeapProfilingAvailable, "heap profiling is not available in this build"))
    struct AsyncHeapTests {
        @Test("an allocation made in async code is profiled under its awaiting callers")
        func heapProfileShowsAwaitingCallers() async throws {
            let saved = PprofServer.memoryProfileRate
            PprofServer.memoryProfileRate = 64 * 1024
            defer { PprofServer.memoryProfileRate = saved }
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let kept = await Task.detached { AsyncPointers(pointers: await asyncHeapEntry(count: 8192)) }.value // 32 MiB
            defer { kept.pointers.forEach { free($0) } }
            let url = "\(server.baseURL!)/debug/pprof/heap"
            let output = try await offThePool { try GoPprof.run(["-traces", "-sample_index=inuse_space", url]) }
            var leaf = 0, chained = 0
            for trace in GoPprof.parseTraces(output) {
                guard let i = trace.functions.firstIndex(where: { $0.contains("asyncHeapLeaf") }) else { continue }
                leaf += 1
                let rest = trace.functions[i...]
                if let m = rest.firstIndex(where: { $0.contains("asyncHeapMiddle") }),
                   trace.functions[m...].contains(where: { $0.contains("asyncHeapEntry") }) { chained += 1 }
            }
            #expect(leaf > 0, "no sample in asyncHeapLeaf:\n\(output.prefix(3000))")
            #expect(chained == leaf, "\(chained) of \(leaf) stacks show asyncHeapMiddle then asyncHeapEntry:\n\(output.prefix(4000))")
        }
    }
}

@Suite struct AsyncNameTests {
    @Test("resume partial functions read as the function they belong to; other names are untouched")
    func logicalNames() {
        #expect(logicalAsyncName("(1) await resume partial function for App.middleLayer() async -> ()") == "App.middleLayer() async -> ()")
        #expect(logicalAsyncName("(12) suspend resume partial function for closure #1 in f()") == "closure #1 in f()")
        for unchanged in ["(x) await resume partial function for f()", "App.f() -> ()", "(1) something else", "(1"] {
            #expect(logicalAsyncName(unchanged) == unchanged)
        }
    }
}

/// pprof's duration text ("2.62s", "110ms", "40us", "7ns") in nanoseconds; 0 if not one.
func nanosecondsOf(_ text: String) -> Double {
    for (suffix, scale) in [("ms", 1e6), ("us", 1e3), ("ns", 1.0), ("s", 1e9)] where text.hasSuffix(suffix) {
        return Double(text.dropLast(suffix.count)).map { $0 * scale } ?? 0
    }
    return 0
}
