import CPprof
import Glibc
import Synchronization

/// Reads the symbol, line and inline tables of the loaded objects ahead of
/// the first profile, once per process, on a thread of its own at the lowest
/// CPU priority (SCHED_IDLE): it uses cores the app leaves idle, and the first
/// `/goroutine?debug=2` or CPU profile then answers about as fast as later
/// ones. Started when the first `PprofHandler` is created (every
/// `PprofServer` has one).
/// `PPROF_SYMBOL_PRELOAD=0` in the environment turns it off (the tables
/// are then read by the first request that needs them).
enum SymbolPreload {
    private static let started = Atomic<Bool>(false)

    static var isDisabled: Bool {
        getenv("PPROF_SYMBOL_PRELOAD").map { String(cString: $0) == "0" } ?? false
    }

    static func startOnce() {
        guard !isDisabled, !started.exchange(true, ordering: .relaxed) else { return }
        // A failure to start only means the first request loads the tables.
        _ = PThread.spawn(name: "pprof-preload", joinable: false) {
            _ = cpprof_lower_thread_priority()
            Symbolizer.shared.preload()
        }
    }
}
