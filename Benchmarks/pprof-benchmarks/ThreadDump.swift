import Glibc
import Pprof
import Synchronization

/// `thread-dump`: `/debug/pprof/goroutine` (a dump of every thread) over
/// loopback with 10, 100 and 1000 application threads, and the longest
/// pause the busy ones see while a dump runs, against equally long windows
/// without a dump.
enum ThreadDump {
    struct Options {
        var threadCounts = [10, 100, 1000]
        var requests = 15
        var busy = 2
        var summary: String?
    }

    /// Gaps between consecutive CLOCK_MONOTONIC reads longer than this are recorded.
    static let gapThreshold: Int64 = 20_000

    /// A busy thread reading the clock in a tight loop; every gap above the
    /// threshold goes into a preallocated log (start, length), published by
    /// an atomic count, so the loop never allocates or locks.
    final class GapLog: @unchecked Sendable {
        static let capacity = 1 << 20
        let entries = UnsafeMutablePointer<Int64>.allocate(capacity: 2 * capacity)
        let count = Atomic<Int>(0)

        func loop(stop: borrowing Atomic<Bool>) {
            var previous = monotonicNanoseconds()
            var n = 0
            var i = 0
            while true {
                let now = monotonicNanoseconds()
                let gap = now - previous
                if gap > ThreadDump.gapThreshold && n < Self.capacity {
                    entries[2 * n] = previous
                    entries[2 * n + 1] = gap
                    n += 1
                    count.store(n, ordering: .releasing)
                }
                previous = now
                i &+= 1
                if i & 4095 == 0 && stop.load(ordering: .relaxed) { return }
            }
        }

        /// The longest gap that overlaps [from, to].
        func longestGap(from: Int64, to: Int64) -> Int64 {
            let n = count.load(ordering: .acquiring)
            var longest: Int64 = 0
            for k in 0..<n {
                let start = entries[2 * k], length = entries[2 * k + 1]
                if start < to && start + length > from { longest = max(longest, length) }
            }
            return longest
        }
    }

    /// The application's threads: busy ones, and blocked ones in a mix of
    /// pipe read, condition wait and nanosleep. Never torn down: the process
    /// exits when the benchmark ends.
    final class Threads: @unchecked Sendable {
        let stop = Atomic<Bool>(false)
        let sleepInterrupted = Atomic<Int>(0)   // nanosleep returned EINTR
        let readInterrupted = Atomic<Int>(0)    // read returned EINTR (SA_RESTART should prevent it)
        let waitReturned = Atomic<Int>(0)       // pthread_cond_wait returned without a broadcast
        private(set) var logs: [GapLog] = []
        private(set) var blocked = 0
        private(set) var sleepers = 0
        private var pipeEnds: [Int32] = [0, 0]
        private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

        init(busy: Int) {
            guard pipe(&pipeEnds) == 0 else { fatal("pipe: errno \(errno)") }
            pthread_mutex_init(lock, nil)
            pthread_cond_init(condition, nil)
            for _ in 0..<busy {
                let log = GapLog()
                logs.append(log)
                _ = spawnThread(name: "bench-busy") { [self] in log.loop(stop: self.stop) }
            }
        }

        var total: Int { logs.count + blocked }

        /// Adds blocked threads until there are `count` application threads.
        func grow(to count: Int) {
            while total < count {
                let kind = blocked % 3
                blocked += 1
                switch kind {
                case 0:
                    _ = spawnThread(name: "bench-read") { [self] in
                        var byte: UInt8 = 0
                        while true {
                            let n = read(pipeEnds[0], &byte, 1)
                            if n < 0 && errno == EINTR { _ = readInterrupted.add(1, ordering: .relaxed); continue }
                            return
                        }
                    }
                case 1:
                    _ = spawnThread(name: "bench-wait") { [self] in
                        pthread_mutex_lock(lock)
                        while !stop.load(ordering: .relaxed) {
                            pthread_cond_wait(condition, lock)
                            _ = waitReturned.add(1, ordering: .relaxed)
                        }
                        pthread_mutex_unlock(lock)
                    }
                default:
                    sleepers += 1
                    _ = spawnThread(name: "bench-sleep") { [self] in
                        while !stop.load(ordering: .relaxed) {
                            var ts = timespec(tv_sec: 3600, tv_nsec: 0)
                            if nanosleep(&ts, nil) != 0 && errno == EINTR {
                                _ = sleepInterrupted.add(1, ordering: .relaxed)
                            }
                        }
                    }
                }
            }
        }
    }

    static func run(_ options: Options) {
        let summary = Summary(path: options.summary)
        let server: PprofServer
        do { server = try PprofServer.start(.init(host: "127.0.0.1", port: 0)) } catch { fatal("pprof server: \(error)") }
        guard let port = server.port else { fatal("the pprof server has no port") }
        let threads = Threads(busy: options.busy)
        printOut("## thread-dump: GET /debug/pprof/goroutine (debug=0, debug=2) over loopback; \(options.busy) busy "
                 + "threads record gaps > \(gapThreshold / 1000) µs between clock reads; the rest block in pipe read, "
                 + "condition wait and nanosleep; \(options.requests) dumps per figure, each followed by an equally "
                 + "long window without a dump")
        for n in options.threadCounts {
            threads.grow(to: n)
            sleepNanoseconds(300_000_000) // let the new threads reach their blocking call
            var dumpGaps: [Double] = [], controlGaps: [Double] = []
            let sleep0 = threads.sleepInterrupted.load(ordering: .relaxed)
            let read0 = threads.readInterrupted.load(ordering: .relaxed)
            let wait0 = threads.waitReturned.load(ordering: .relaxed)
            var dumps = 0
            for debug in [0, 2] {
                let target = "/debug/pprof/goroutine" + (debug == 0 ? "" : "?debug=2")
                for _ in 0..<2 { _ = get(port, target); dumps += 1 } // warm-up: symbols of new stacks
                var times: [Double] = []
                var last: [UInt8] = []
                for _ in 0..<options.requests {
                    sleepNanoseconds(30_000_000)
                    let w0 = monotonicNanoseconds()
                    let r = get(port, target)
                    let w1 = monotonicNanoseconds()
                    dumps += 1
                    times.append(Double(r.nanoseconds) / 1e6)
                    last = r.body
                    sleepNanoseconds(30_000_000)
                    let c0 = monotonicNanoseconds()
                    sleepNanoseconds(w1 - w0)
                    let c1 = monotonicNanoseconds()
                    sleepNanoseconds(5_000_000) // gaps still open at c1 are logged when they end
                    dumpGaps.append(Double(threads.logs.map { $0.longestGap(from: w0, to: w1) }.max() ?? 0) / 1e6)
                    controlGaps.append(Double(threads.logs.map { $0.longestGap(from: c0, to: c1) }.max() ?? 0) / 1e6)
                }
                // What the last dump listed (threads, and threads it got no stack from).
                var listed = 0, silent = 0
                if debug == 0 {
                    let p = DecodedProfile(gzippedBody: last)
                    listed = Int(p.samples)
                    silent = Int(keyValue("without_stack", in: p.comments) ?? -1)
                } else {
                    let lines = String(decoding: last, as: UTF8.self).split(separator: "\n")
                    listed = lines.filter { $0.hasPrefix("goroutine ") }.count
                    silent = lines.filter { $0.contains("(no stack:") }.count
                }
                let d = Distribution(times)
                printOut("\(threads.total) app threads (\(listed) listed, \(silent) without stack), debug=\(debug): median "
                         + "\(format(d.median, 1)) ms, p90 \(format(d.quantile(0.9), 1)), [\(format(d.min, 1)) … "
                         + "\(format(d.max, 1))], \(last.count) bytes")
                summary.record("threads.b\(options.busy).\(n).debug\(debug)", [d.median, d.quantile(0.9), d.min, d.max, Double(d.count),
                                                               Double(listed), Double(silent)])
            }
            let g = Distribution(dumpGaps), c = Distribution(controlGaps)
            let sleeps = Double(threads.sleepInterrupted.load(ordering: .relaxed) - sleep0)
            let reads = Double(threads.readInterrupted.load(ordering: .relaxed) - read0)
            let waits = Double(threads.waitReturned.load(ordering: .relaxed) - wait0)
            let perSleeper = sleeps / Double(max(1, dumps * threads.sleepers))
            printOut("\(threads.total) app threads: longest gap a busy thread saw, per window: during a dump median "
                     + "\(format(g.median, 2)) ms, p90 \(format(g.quantile(0.9), 2)), max \(format(g.max, 2)); without "
                     + "a dump median \(format(c.median, 2)) ms, p90 \(format(c.quantile(0.9), 2)), max \(format(c.max, 2)); "
                     + "EINTR from nanosleep per sleeping thread per dump \(format(perSleeper, 2)), from read \(Int(reads)), "
                     + "condition-wait returns \(Int(waits))")
            summary.record("threads.b\(options.busy).\(n).pause", [g.median, g.quantile(0.9), g.max, c.median, c.quantile(0.9), c.max,
                                                  Double(g.count), perSleeper, reads, waits])
        }
        threads.stop.store(true, ordering: .relaxed)
        server.stop()
        summary.write()
    }

    private static func get(_ port: Int, _ target: String) -> HTTPGetResult {
        let r = httpGet(port: port, target: target)
        if r.status != 200 { fatal("GET \(target): status \(r.status)") }
        return r
    }
}
