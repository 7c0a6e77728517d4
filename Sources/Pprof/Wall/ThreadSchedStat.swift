import Glibc

// A thread's time on a CPU and waiting for one, as the scheduler counts it
// (/proc/self/task/TID/schedstat), for sharing a thread's wall time between
// its on-CPU and its blocked stacks (see `ThreadStates`).

/// What /proc/self/task/TID/schedstat says of one thread at one moment.
struct ThreadSchedStat: Sendable {
    /// CLOCK_MONOTONIC when it was read.
    var at: Int64
    /// Time it ran (field 1) plus time it waited on a run queue (field 2):
    /// the time it was on a CPU or wanted one; the rest it was blocked.
    var runnableNanoseconds: Int64

    /// nil if the thread is gone or the kernel keeps no schedstat
    /// (CONFIG_SCHED_INFO off).
    static func read(_ tid: Int32) -> ThreadSchedStat? {
        let fd = open("/proc/self/task/\(tid)/schedstat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 96)
        var n = 0
        repeat {
            n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        } while n < 0 && errno == EINTR
        let at = Clock.monotonicNanoseconds()
        guard n > 0 else { return nil }
        let fields = buffer[0..<n].split(separator: UInt8(ascii: " "), maxSplits: 2)
        guard fields.count >= 2, let run = number(fields[0]), let wait = number(fields[1]) else { return nil }
        return ThreadSchedStat(at: at, runnableNanoseconds: run &+ wait)
    }

    /// The share of [self, later] the thread spent on a CPU or waiting for
    /// one, in 0...1; nil if no time passed.
    func runnableFraction(until later: ThreadSchedStat) -> Double? {
        let elapsed = later.at - at
        guard elapsed > 0 else { return nil }
        return min(1, max(0, Double(later.runnableNanoseconds - runnableNanoseconds) / Double(elapsed)))
    }

    private static func number(_ digits: ArraySlice<UInt8>) -> Int64? {
        Int64(String(decoding: digits, as: UTF8.self))
    }
}
