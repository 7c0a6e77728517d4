import Glibc
import Synchronization

/// Admission control for memory: work that allocates much (a profile, a
/// symbol table) first checks that the memory is there, and is refused (a
/// 503, or symbols read on a later request) when it is not.
///
/// Why: in Swift a failed allocation traps, and nothing can catch it. Under
/// an address-space limit (`ulimit -v`, RLIMIT_AS) or strict overcommit, a
/// profile started when the process is near its limit would kill the host.
///
/// How: the check maps the bytes the work may need plus `marginBytes` (left
/// for the app, and for the profiler's cheap paths such as writing a 503),
/// then unmaps them at once. A mapping, unlike an allocation, fails with an
/// error. Work admitted and still running holds its estimate (`reserved`):
/// the next check asks for its own estimate on top, so eight requests at
/// once do not each count the same free space.
///
/// Limits: a check is a snapshot. The app may take the memory between the
/// check and its use; estimates are measured figures (Docs/Hardening.md),
/// not bounds. It makes a crash unlikely, not impossible.
enum MemoryHeadroom {
    /// Kept free beyond every estimate.
    static let marginBytes = 16 << 20
    /// What one request may allocate once symbols are loaded: the largest
    /// address-space growth measured per request (a worker's 8 MiB stack,
    /// the snapshot, the profile and its encoding) was 12-17 MiB.
    static let requestBytes = 16 << 20

    /// Address space a new thread takes: its stack, of the default size
    /// (RLIMIT_STACK; at most 64 MiB counted, 8 MiB when unlimited).
    static let threadBytes: Int = {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_STACK.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return 8 << 20 }
        return Int(clamping: min(limit.rlim_cur, 64 << 20))
    }()

    /// Estimates of the work admitted and still running.
    private static let reserved = Atomic<Int>(0)
    /// Checks that failed, for the profiles' comments and the tests.
    private static let refusals = Atomic<Int>(0)

    /// Whether `bytes` more (and the margin, and what running work holds)
    /// can be mapped right now.
    static func isAvailable(_ bytes: Int) -> Bool {
        let (total, overflow) = bytes.addingReportingOverflow(marginBytes + reserved.load(ordering: .relaxed))
        guard !overflow, total > 0,
              let probe = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              probe != MAP_FAILED else {
            refusals.add(1, ordering: .relaxed)
            return false
        }
        munmap(probe, total)
        return true
    }

    /// Runs `body` if `bytes` are available, holding them until it returns;
    /// nil (and `body` not run) if they are not.
    static func withReservation<R>(_ bytes: Int, _ body: () -> R) -> R? {
        guard isAvailable(bytes) else { return nil }
        reserved.add(bytes, ordering: .relaxed)
        defer { reserved.subtract(bytes, ordering: .relaxed) }
        return body()
    }

    /// Checks refused since the process started.
    static var refusalCount: Int { refusals.load(ordering: .relaxed) }
}
