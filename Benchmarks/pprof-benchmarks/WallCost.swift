import Glibc
import Pprof
import Synchronization

/// `wall-cost`: what a `/debug/fgprof` profile costs the process. 100 (or
/// --threads) application threads behave like a server's workers: each wakes
/// every 50 ms (or --wake-ms), works about 50 µs, and sleeps again. A run measures the
/// process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`, every thread) over a
/// window of --seconds, with a `/debug/fgprof?seconds=N+1` request running
/// or without one; runs alternate, profiled first in odd pairs and last in
/// even ones. Cost = (profiled − unprofiled CPU) / window, in % of one core.
enum WallCost {
    struct Options {
        var threads = 100
        /// How often each thread wakes. Every wake-up between two ticks
        /// costs the sampler a read of where the thread blocks again.
        var wakeMilliseconds = 50
        var seconds = 5
        var pairs = 7
        var summary: String?
    }

    static func run(_ options: Options) {
        guard options.wakeMilliseconds > 0 else { fatal("--wake-ms needs a positive number of milliseconds") }
        let summary = Summary(path: options.summary)
        let server: PprofServer
        do { server = try PprofServer.start(.init(host: "127.0.0.1", port: 0)) } catch { fatal("pprof server: \(error)") }
        guard let port = server.port else { fatal("the pprof server has no port") }
        let stop = Atomic<Bool>(false)
        let sink = Atomic<UInt64>(0)
        for i in 0..<options.threads {
            _ = spawnThread(name: "wall-worker") {
                var x = UInt64(i) &+ 0x9E37_79B9_7F4A_7C15
                let period = Int64(options.wakeMilliseconds) * 1_000_000
                var ts = timespec(nanoseconds: period)
                // Spread the wake-ups over the period.
                var first = timespec(nanoseconds: Int64(i) * period / Int64(max(options.threads, 1)))
                nanosleep(&first, nil)
                while !stop.load(ordering: .relaxed) {
                    let t0 = monotonicNanoseconds()
                    repeat {
                        for _ in 0..<200 { x = x &* 6_364_136_223_846_793_005 &+ 1 }
                    } while monotonicNanoseconds() - t0 < 50_000
                    nanosleep(&ts, nil)
                }
                _ = sink.wrappingAdd(x, ordering: .relaxed)
            }
        }
        sleepNanoseconds(500_000_000)
        printOut("## wall-cost: \(options.threads) threads (each 50 µs of work every \(options.wakeMilliseconds) ms); process CPU over \(options.seconds) s "
                 + "windows, with and without /debug/fgprof running (99 Hz per thread); \(options.pairs) pairs")
        func window(profiled: Bool) -> Double {
            var client: pthread_t?
            if profiled {
                client = spawnThread(name: "wall-client") {
                    let r = httpGet(port: port, target: "/debug/fgprof?seconds=\(options.seconds + 1)")
                    if r.status != 200 { fatal("GET /debug/fgprof: status \(r.status)") }
                }
                sleepNanoseconds(300_000_000) // the profile has started
            }
            let c0 = processCPUNanoseconds(), t0 = monotonicNanoseconds()
            sleepNanoseconds(Int64(options.seconds) * 1_000_000_000)
            let c1 = processCPUNanoseconds(), t1 = monotonicNanoseconds()
            if let client { pthread_join(client, nil) } else { sleepNanoseconds(1_300_000_000) }
            return Double(c1 - c0) / Double(t1 - t0)
        }
        _ = window(profiled: true) // warm-up: first symbolization, libunwind
        var costs: [Double] = [], base: [Double] = []
        for pair in 0..<options.pairs {
            let profiledFirst = pair % 2 == 0
            let a = window(profiled: profiledFirst), b = window(profiled: !profiledFirst)
            let (p, u) = profiledFirst ? (a, b) : (b, a)
            costs.append((p - u) * 100)
            base.append(u * 100)
            printOut("pair \(pair + 1): unprofiled \(format(u * 100, 2)) % of a core, profiled \(format(p * 100, 2)) %")
        }
        let d = Distribution(costs)
        printOut("wall-cost: fgprof adds \(format(d.median, 2)) % of one core (median; range \(format(d.min, 2)) … \(format(d.max, 2))); "
                 + "the unprofiled process uses \(format(Distribution(base).median, 2)) %")
        summary.record("wall.cost", [d.median, d.min, d.max, Double(d.count)])
        stop.store(true, ordering: .relaxed)
        server.stop()
        summary.write()
    }
}
