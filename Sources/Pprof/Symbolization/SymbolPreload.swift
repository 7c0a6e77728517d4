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
///   (the profiler's memory on the demo 5.2-5.4 MB instead of 2.2 MB).
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
    /// (blocked ones are where they were).
    static let captures = 3
    static let captureSpacing: Duration = .milliseconds(250)

    private static let started = Atomic<Bool>(false)

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
        // A failure to start only means the first request loads the tables.
        _ = start(mode, symbolizer: .shared, delay: mode == .targeted ? targetedDelay : .zero, joinable: false)
    }

    /// Starts the read-ahead thread; nil if `mode` is off or no thread
    /// could start. A joinable thread must be joined.
    static func start(_ mode: Mode, symbolizer: Symbolizer, delay: Duration, joinable: Bool) -> pthread_t? {
        guard mode != .off else { return nil }
        let spawned = PThread.spawn(name: "pprof-preload", joinable: joinable) {
            Clock.sleep(delay)
            run(mode, symbolizer: symbolizer)
        }
        guard case .success(let thread) = spawned else { return nil }
        return thread
    }

    private static func run(_ mode: Mode, symbolizer: Symbolizer) {
        switch mode {
        case .off:
            return
        case .full:
            _ = cpprof_lower_thread_priority()
            symbolizer.preload()
        case .targeted:
            // The captures run at the thread's normal priority: a dump holds
            // the dump lock, and a request's dump waiting behind a nice-19
            // thread on a busy machine could wait long. One costs 1-2 ms.
            var addresses = Set<UInt64>()
            for i in 0..<captures {
                if i > 0 { Clock.sleep(captureSpacing) }
                for thread in ThreadDumper.dump() where thread.answered {
                    addresses.formUnion(GoroutineProfile.adjusted(thread.stack))
                }
            }
            // The mappings profiles list (build ids read from each file), under the lock: cheap.
            _ = symbolizer.executableMappings()
            _ = cpprof_lower_thread_priority()
            symbolizer.readAhead(Array(addresses))
        }
    }
}
