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

/// Runs blocking work off the cooperative pool, whose threads the workload needs.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

extension CPUSamplingTests {
    @Suite("Async call stacks", .serialized)
    struct AsyncStackTests {
        @Test("a CPU profile shows the async leaf under every awaiting caller, in order")
        func cpuProfileShowsAwaitingCallers() async throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let workload = AsyncWorkload()
            let tasks = workload.start()
            let url = "\(server.baseURL!)/debug/pprof/profile?seconds=3"
            let output = try await offThePool { try GoPprof.run(["-traces", url]) }
            await workload.stop(tasks)
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
            if ProcessInfo.processInfo.environment["ASYNC_DEBUG"] != nil { print(output.prefix(5000)); print(kinds, withChain, leafSamples) }
            #expect(leafSamples >= 30, "too few leaf samples (\(leafSamples)):\n\(output.prefix(3000))")
            #expect(Double(withChain) >= 0.9 * Double(leafSamples),
                    "\(withChain) of \(leafSamples) leaf samples show the whole chain:\n\(output.prefix(6000))")
            for kind in asyncExpectedChains.keys {
                #expect(kinds[kind, default: 0] > 0, "no sample through the \(kind) task: \(kinds)")
            }
            // Resume functions read as the function they resume into.
            #expect(!output.contains("resume partial function"), "\(output.prefix(3000))")
            #expect(output.contains("async_chains="), "the profile's comments lack the chain counters")
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
