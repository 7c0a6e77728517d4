import Glibc

/// Wall-clock and monotonic time in nanoseconds, without Foundation.
enum Clock {
    static func wallNanoseconds() -> Int64 { read(CLOCK_REALTIME) }
    static func monotonicNanoseconds() -> Int64 { read(CLOCK_MONOTONIC) }
    /// CPU time the calling thread has used.
    static func threadCPUNanoseconds() -> Int64 { read(CLOCK_THREAD_CPUTIME_ID) }

    private static func read(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Sleeps the calling thread; signals may end it early.
    static func sleep(nanoseconds: Int64) {
        guard nanoseconds > 0 else { return }
        var ts = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        _ = nanosleep(&ts, nil)
    }

    static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        sleep(nanoseconds: seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000)
    }
}
