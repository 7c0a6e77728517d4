internal import CPprof
import Synchronization

/// Makes stack walks see the awaiting callers of Swift async code.
///
/// The C walk (async_walk.c) recognises an async function's frame by its
/// return address: it returns into the concurrency runtime's job-running
/// function. That function is local to libswift_Concurrency (or to a
/// statically linked executable), so its address range comes from the symbol
/// tables, read here, outside any handler, and published to C before
/// sampling starts. Resume functions are named after the function they
/// resume (`logicalAsyncName`).
enum AsyncStacks {
    /// The runtime function every job runs under (swift_job_run and the
    /// executors' entry points call it); the async frame is its callee.
    static let executorSymbol = "_ZN5swift34runJobInEstablishedExecutorContextEPNS_3JobE"

    private static let published = Atomic<Bool>(false)

    /// Publishes the executor range if not done yet. Cheap once it has
    /// succeeded; until then it looks again on each call (the runtime may
    /// not be loaded yet). Returns whether async frames can be recognised.
    @discardableResult
    static func prepare(symbols: Symbolizer = .shared) -> Bool {
        if published.load(ordering: .acquiring) { return true }
        // The shared runtime first; the executable (static stdlib) only
        // without it, since its symbol table can be large.
        var ranges = symbols.functionRanges(named: executorSymbol) { $0.name.hasSuffix("/libswift_Concurrency.so") }
        if ranges.isEmpty { ranges = symbols.functionRanges(named: executorSymbol) { $0.isMainProgram } }
        for range in ranges { _ = cpprof_async_add_executor_range(range.lowerBound, range.upperBound) }
        let ok = cpprof_async_executor_range_count() > 0
        if ok {
            // Contexts are read only inside regions this snapshot lists.
            _ = cpprof_async_refresh_snapshot(1)
            published.store(true, ordering: .releasing)
        }
        return ok
    }

    /// Takes a new snapshot of the mapped regions if a context lay outside
    /// the last one (task memory mapped since): later chains read it.
    static func refreshSnapshotIfCut() {
        _ = cpprof_async_refresh_snapshot(0)
    }

    /// Counters of the chain walk, for profile comments.
    static func stats() -> cpprof_async_stats {
        var s = cpprof_async_stats()
        cpprof_async_get_stats(&s)
        return s
    }

    /// The chain counters since the process started (heap profiles span its life).
    static func lifetimeComment() -> String {
        comment(from: cpprof_async_stats(), to: stats())
    }

    /// The comment a profile carries about the chains followed between two
    /// readings of `stats()`.
    static func comment(from then: cpprof_async_stats, to now: cpprof_async_stats) -> String {
        "swift-pprof: async_chains=\(now.chains &- then.chains) async_levels=\(now.levels &- then.levels) async_chains_cut=\(now.cut &- then.cut)"
    }
}

/// `(2) await resume partial function for middleLayer()` reads as
/// `middleLayer()`: a resume (or suspend) partial function is a piece of the
/// async function it belongs to. Other names are returned unchanged.
func logicalAsyncName(_ demangled: String) -> String {
    guard demangled.first == "(", let close = demangled.firstIndex(of: ")"),
          demangled[demangled.index(after: demangled.startIndex)..<close].allSatisfy(\.isNumber) else { return demangled }
    let rest = demangled[demangled.index(after: close)...]
    for marker in [" await resume partial function for ", " suspend resume partial function for "] where rest.hasPrefix(marker) {
        return String(rest.dropFirst(marker.count))
    }
    return demangled
}
