internal import CPprof
import Glibc
import Synchronization

/// Reads the symbol, line and inline tables of the loaded objects ahead of
/// the first profile, once per process, on a thread of its own at the lowest
/// CPU priority (nice 19), so that on a host with idle cores the first
/// `/goroutine?debug=2` answers about as fast as later ones. Opt-in with
/// `PPROF_SYMBOL_PRELOAD=1` in the environment: it reads every loaded
/// object, needed or not (25-35 MiB more RSS on the demo), and on a saturated
/// machine it does not finish in time anyway (Docs/Benchmarks.md). Started
/// when the first `PprofHandler` is created (every `PprofServer` has one).
enum SymbolPreload {
    private static let started = Atomic<Bool>(false)

    static var isEnabled: Bool {
        getenv("PPROF_SYMBOL_PRELOAD").map { String(cString: $0) == "1" } ?? false
    }

    static func startOnce() {
        guard isEnabled, !started.exchange(true, ordering: .relaxed) else { return }
        // A failure to start only means the first request loads the tables.
        _ = PThread.spawn(name: "pprof-preload", joinable: false) {
            _ = cpprof_lower_thread_priority()
            Symbolizer.shared.preload()
        }
    }
}
