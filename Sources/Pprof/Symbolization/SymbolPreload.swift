internal import CPprof
import Glibc
import Synchronization

/// Reads symbol tables ahead of the first profile, once per process, on a
/// thread of its own ("pprof-preload") started when the first `PprofHandler`
/// is created (every `PprofServer` has one), so that the first
/// `/goroutine?debug=2` costs about what later ones do. `PPROF_SYMBOL_PRELOAD`
/// chooses what it reads:
///
/// - unset (the default), targeted: 2 s after start, once the app's threads
///   exist, it captures every thread's stack a few times, as a dump does,
///   and reads exactly what symbolizing those stacks needs, at nice 19, then
///   ends. The memory is what the first scrape would have loaded anyway.
/// - `1`, full: every unit of every loaded object, at nice 19, needed or not
///   (the profiler's memory on the demo 5.5 MB instead of 2.2 MB, over the 4 MiB budget).
/// - `0` (or `false`, `no`, `off`): nothing; the first request reads what it needs.
///
/// Figures: Docs/Benchmarks.md, "First scrape with a targeted read-ahead".
enum SymbolPreload {
    enum Mode: Equatable, Sendable {
        case off, targeted, full
    }

    /// After start, so that the app's threads exist and sit where they wait.
    static let targetedDelay: Duration = .seconds(2)
    /// Captures, spaced apart: a running thread is somewhere else in each
    /// (blocked ones are where they were). On the demo, 8 captures 150 ms
    /// apart left the first dump at 1.2-2.3x a warm one in CPU where 3
    /// captures 250 ms apart left it at 1.6-5.1x (4 runs each): a running
    /// thread missed in every capture can bring a large symbol table.
    static let captures = 8
    static let captureSpacing: Duration = .milliseconds(150)

    private static let started = Atomic<Bool>(false)

    /// What the process's read-ahead did, for the heap profile's comment:
    /// what it costs the app is measured on the app (Docs/Benchmarks.md).
    private struct Report {
        var mode: Mode
        var startedNanoseconds: Int64
        var finishedNanoseconds: Int64?
        var cpuNanoseconds: Int64 = 0
        var addresses = 0
    }
    private static let report = Mutex<Report?>(nil)

    /// One comment line: the read-ahead's mode, whether it has finished,
    /// when (after the first `PprofHandler`) and its thread's CPU time.
    static func comment() -> String {
        guard let r = report.withLock({ $0 }) else {
            return "swift-pprof: symbol_read_ahead=\(configuredMode == .off ? "off" : "not_started")"
        }
        let mode = r.mode == .full ? "full" : "targeted"
        guard let finished = r.finishedNanoseconds else {
            return "swift-pprof: symbol_read_ahead=\(mode) finished=no"
        }
        return "swift-pprof: symbol_read_ahead=\(mode) finished=yes after_start_ms=\((finished - r.startedNanoseconds) / 1_000_000) "
            + "cpu_us=\(r.cpuNanoseconds / 1000) addresses=\(r.addresses)"
    }

    /// Addresses in the compile units of the code that serves a request
    /// (one per file; each file is a unit), which the captures cannot see
    /// before the first request: on the demo the first dump read 7 units of
    /// its own stack (worker, server, endpoints, the dump) after a
    /// read-ahead of the other threads' stacks.
    static var requestPathAddresses: [UInt64] {
        [httpWorkerPoolUnit, httpServerUnit, pprofServerUnit, pprofHandlerUnit, pprofEndpointsUnit,
         namedProfileEndpointUnit, threadProfilesUnit, cpuProfileEndpointUnit].map {
            UInt64(UInt(bitPattern: unsafeBitCast($0, to: UnsafeRawPointer.self)))
        }
    }

    static func mode(environmentValue value: String?) -> Mode {
        switch value?.lowercased() {
        case "1": return .full
        case "0", "false", "no", "off": return .off
        default: return .targeted
        }
    }

    static var configuredMode: Mode {
        mode(environmentValue: getenv("PPROF_SYMBOL_PRELOAD").map { String(cString: $0) })
    }

    static func startOnce() {
        let mode = configuredMode
        guard mode != .off, !started.exchange(true, ordering: .relaxed) else { return }
        report.withLock { $0 = Report(mode: mode, startedNanoseconds: Clock.monotonicNanoseconds()) }
        // A failure to start only means the first request loads the tables.
        _ = start(mode, symbolizer: .shared, delay: mode == .targeted ? targetedDelay : .zero, joinable: false)
    }

    /// Starts the read-ahead thread; nil if `mode` is off or no thread
    /// could start. A joinable thread must be joined.
    static func start(_ mode: Mode, symbolizer: Symbolizer, delay: Duration, joinable: Bool) -> pthread_t? {
        guard mode != .off else { return nil }
        let spawned = PThread.spawn(name: "pprof-preload", joinable: joinable) {
            Clock.sleep(delay)
            let cpu = Clock.threadCPUNanoseconds()
            let addresses = run(mode, symbolizer: symbolizer)
            let spent = Clock.threadCPUNanoseconds() - cpu, now = Clock.monotonicNanoseconds()
            if symbolizer === Symbolizer.shared {
                report.withLock { r in
                    r?.finishedNanoseconds = now
                    r?.cpuNanoseconds = spent
                    r?.addresses = addresses
                }
            }
        }
        guard case .success(let thread) = spawned else { return nil }
        return thread
    }

    /// Reads ahead; returns how many addresses it symbolized (0: full).
    private static func run(_ mode: Mode, symbolizer: Symbolizer) -> Int {
        switch mode {
        case .off:
            return 0
        case .full:
            _ = cpprof_lower_thread_priority()
            symbolizer.preload()
            return 0
        case .targeted:
            // The captures run at the thread's normal priority: a dump holds
            // the dump lock, and a request's dump waiting behind a nice-19
            // thread on a busy machine could wait long. One costs 1-2 ms.
            var addresses = Set<UInt64>()
            var last: [ThreadSnapshot] = []
            for i in 0..<captures {
                if i > 0 { Clock.sleep(captureSpacing) }
                last = ThreadDumper.dump()
                for thread in last where thread.answered {
                    addresses.formUnion(GoroutineProfile.adjusted(thread.stack))
                }
            }
            // The mappings profiles list (build ids read from each file), under the lock: cheap.
            _ = symbolizer.executableMappings()
            _ = cpprof_lower_thread_priority()
            let found = symbolizer.readAhead(Array(addresses) + requestPathAddresses)
            // Their short names too (computed outside the cache's lock).
            for frames in found.values { _ = ShortNameCache.shared.shortened(frames) }
            // Then a `/goroutine?debug=2` answered as a request answers it,
            // its text dropped: the request path's own first use (the
            // runtime's type metadata and conformances for the endpoint's
            // generic code, lazily bound functions, the symbolizer's batch
            // and cache, the names of the dumping thread's own frames) is
            // paid here, not by the first request (Docs/Benchmarks.md,
            // "First scrape: the request path rehearsed"). On a worker of
            // the server if one was offered: where requests run, at their
            // priority, with a dump of its own. Else here, from the last
            // capture: no dump (and its lock) taken at nice 19.
            let worker = symbolizer === Symbolizer.shared ? serverWorkers.withLock { $0.first?.run } : nil
            if worker?({ rehearse(nil, symbolizer: symbolizer) }) != true {
                rehearse(last, symbolizer: symbolizer)
            }
            return addresses.count
        }
    }
}

extension SymbolPreload {
    /// Runs a body on a server's worker thread; false if it could not.
    typealias WorkerRunner = @Sendable (@escaping @Sendable () -> Void) -> Bool
    /// Servers serving now, in the order they started.
    private static let serverWorkers = Mutex<[(owner: ObjectIdentifier, run: WorkerRunner)]>([])

    /// A started `PprofServer` offers its worker threads for the rehearsal
    /// until it stops; the rehearsal uses the first server still serving.
    static func offerWorkers(owner: ObjectIdentifier, run: @escaping WorkerRunner) {
        serverWorkers.withLock { $0.append((owner, run)) }
    }

    static func withdrawWorkers(owner: ObjectIdentifier) {
        serverWorkers.withLock { $0.removeAll { $0.owner == owner } }
    }

    /// The servers whose workers are offered (for tests).
    static var workerOwners: [ObjectIdentifier] { serverWorkers.withLock { $0.map(\.owner) } }

    /// Answers `GET /debug/pprof/goroutine?debug=2` for `threads` (nil: a
    /// dump of its own, as a request takes) through the endpoints with
    /// default settings, as the server would, and drops the answer. What
    /// the read-ahead inflated stays through it, for the first request: at
    /// the end of a batch that read none of libc's units it would be let
    /// go (Docs/Benchmarks.md, "First scrape: a rehearsal of the dump's
    /// text", on a first version that did so).
    static func rehearse(_ threads: [ThreadSnapshot]?, symbolizer: Symbolizer) {
        let endpoints = PprofEndpoints(settings: EndpointSettings(), symbols: symbolizer,
                                       profiles: [GoroutineProfile(captured: threads)])
        symbolizer.holdingInflatedSections {
            _ = endpoints.handle(HTTPRequest(method: "GET", target: "/debug/pprof/goroutine?debug=2"))
        }
    }
}
