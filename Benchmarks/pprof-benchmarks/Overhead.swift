import Glibc
import Pprof

/// `overhead`: the same fixed workload profiled at 100 Hz through the
/// public API (a PprofServer and an HTTP client) and unprofiled, in
/// alternating runs in one process.
enum Overhead {
    struct Options {
        var threadCounts = [1, 2, 32]
        var pairs = 15
        /// Total iterations of integerWork per run, split evenly over the threads.
        var iterations = 800_000_000
        var depth = 30
        var hz = 100
        /// What the client asks for; longer than any run: it hangs up instead.
        var requestSeconds = 60
        /// The separate run where the client waits for the whole profile.
        var latencySeconds = 3
        var latencyRepetitions = 3
        var summary: String?
    }

    /// Lets the server parse the request and start sampling before the
    /// workload starts (checked afterwards against the profile's own window).
    static let settleNanoseconds: Int64 = 200_000_000

    struct ProfiledRun {
        var times: RunTimes
        var profile: DecodedProfile
        var covered: Bool
    }

    static func run(_ options: Options) {
        let summary = Summary(path: options.summary)
        let server: PprofServer
        do {
            server = try PprofServer.start(.init(host: "127.0.0.1", port: 0, cpuSamplingRate: options.hz))
        } catch {
            fatal("cannot start the pprof server: \(error)")
        }
        guard let port = server.port else { fatal("the pprof server has no port") }
        printOut("## overhead: \(options.iterations) iterations per run over K threads, \(options.pairs) pairs, "
                 + "\(options.hz) Hz, client asks for seconds=\(options.requestSeconds) and hangs up after the run")

        var lastPool: WorkerPool?
        for k in options.threadCounts {
            lastPool?.shutdown()
            let pool = WorkerPool(threads: k, depth: options.depth)
            lastPool = pool
            measure(pool: pool, port: port, options, summary)
        }
        if let pool = lastPool {
            latency(pool: pool, port: port, options, summary)
            pool.shutdown()
        }
        server.stop()
        summary.write()
    }

    private static func unprofiled(_ pool: WorkerPool, _ perThread: Int) -> RunTimes {
        sleepNanoseconds(settleNanoseconds)
        return pool.run(iterationsPerThread: perThread)
    }

    static func profiled(_ pool: WorkerPool, _ perThread: Int, port: Int, seconds: Int) -> ProfiledRun {
        let request = ProfileRequest(port: port, seconds: seconds)
        sleepNanoseconds(settleNanoseconds)
        let startWall = realtimeNanoseconds()
        let times = pool.run(iterationsPerThread: perThread)
        let endWall = realtimeNanoseconds()
        request.hangUp()
        let profile = request.finish()
        let covered = profile.timeNanoseconds <= startWall
            && profile.timeNanoseconds + profile.durationNanoseconds >= endWall
        return ProfiledRun(times: times, profile: profile, covered: covered)
    }

    private static func measure(pool: WorkerPool, port: Int, _ options: Options, _ summary: Summary) {
        let k = pool.threads
        let perThread = options.iterations / k
        printOut("### K = \(k) threads, \(perThread) iterations each")
        // Warm-up, not counted: first runs of fresh threads, first profile
        // (the symbolizer reads the binaries' symbol tables once).
        let reference = unprofiled(pool, perThread).checksum
        _ = profiled(pool, perThread, port: port, seconds: options.requestSeconds)

        var cpuRatios: [Double] = [], wallRatios: [Double] = [], perSample: [Double] = []
        var workerPerSample: [Double] = [], backgroundPerSecond: [Double] = []
        var received: Int64 = 0, expected = 0.0, dropped: Int64 = 0, leafOnly: Int64 = 0
        var records = 0, frames = 0, uncovered = 0, receivedRatios: [Double] = []
        for pair in 0..<options.pairs {
            var plain: RunTimes
            var sampled: ProfiledRun
            if pair % 2 == 0 {
                sampled = profiled(pool, perThread, port: port, seconds: options.requestSeconds)
                plain = unprofiled(pool, perThread)
            } else {
                plain = unprofiled(pool, perThread)
                sampled = profiled(pool, perThread, port: port, seconds: options.requestSeconds)
            }
            if plain.checksum != reference || sampled.times.checksum != reference {
                fatal("the workload's checksum changed between runs")
            }
            let p = sampled.profile
            let cpuRatio = Double(sampled.times.processCPUNanoseconds) / Double(plain.processCPUNanoseconds)
            let wallRatio = Double(sampled.times.wallNanoseconds) / Double(plain.wallNanoseconds)
            let extra = Double(sampled.times.processCPUNanoseconds - plain.processCPUNanoseconds)
            let want = Double(sampled.times.workerCPUNanoseconds) * Double(options.hz) / 1e9
            cpuRatios.append(cpuRatio)
            wallRatios.append(wallRatio)
            if p.samples > 0 {
                perSample.append(extra / Double(p.samples))
                // Split: what the sampled threads themselves lost per sample
                // (signal delivery, handler, cache effects), and what the
                // profiler's own threads (collector, HTTP connection) used
                // per second of the run.
                workerPerSample.append(Double(sampled.times.workerCPUNanoseconds - plain.workerCPUNanoseconds)
                                       / Double(p.samples))
            }
            let background = Double((sampled.times.processCPUNanoseconds - sampled.times.workerCPUNanoseconds)
                                    - (plain.processCPUNanoseconds - plain.workerCPUNanoseconds))
            backgroundPerSecond.append(background / (Double(sampled.times.wallNanoseconds) / 1e9))
            received += p.samples
            expected += want
            receivedRatios.append(Double(p.samples) / want)
            dropped += p.droppedSamples ?? -1_000_000
            leafOnly += p.leafOnlySamples ?? 0
            records += p.records
            frames += p.framesInRecords
            if !sampled.covered { uncovered += 1 }
            printOut("pair \(pair + 1): unprofiled cpu \(ms(plain.processCPUNanoseconds)) "
                     + "(workers \(ms(plain.workerCPUNanoseconds))) wall \(ms(plain.wallNanoseconds)); "
                     + "profiled cpu \(ms(sampled.times.processCPUNanoseconds)) "
                     + "(workers \(ms(sampled.times.workerCPUNanoseconds))) wall \(ms(sampled.times.wallNanoseconds)); "
                     + "cpu ratio \(format(cpuRatio, 4)), wall ratio \(format(wallRatio, 4)); "
                     + "samples \(p.samples)/\(format(want, 1)) expected, dropped \(p.droppedSamples.map { "\($0)" } ?? "?")"
                     + (sampled.covered ? "" : " (profile window did not cover the run)"))
        }
        let cpu = Distribution(cpuRatios), wall = Distribution(wallRatios), cost = Distribution(perSample)
        let share = Distribution(receivedRatios)
        let workerCost = Distribution(workerPerSample), backgroundCost = Distribution(backgroundPerSecond)
        let meanDepth = records > 0 ? Double(frames) / Double(records) : 0
        printOut("K=\(k): cpu ratio median \(format(cpu.median, 4)) [\(format(cpu.min, 4)) … \(format(cpu.max, 4))], "
                 + "wall ratio median \(format(wall.median, 4)) [\(format(wall.min, 4)) … \(format(wall.max, 4))], "
                 + "extra CPU per sample median \(format(cost.median / 1000, 1)) µs "
                 + "[\(format(cost.min / 1000, 1)) … \(format(cost.max / 1000, 1))] = in the workers "
                 + "\(format(workerCost.median / 1000, 1)) µs per sample [\(format(workerCost.min / 1000, 1)) … "
                 + "\(format(workerCost.max / 1000, 1))] + profiler threads \(format(backgroundCost.median / 1e6, 2)) ms "
                 + "per second [\(format(backgroundCost.min / 1e6, 2)) … \(format(backgroundCost.max / 1e6, 2))]; "
                 + "samples \(received) of \(format(expected, 0)) expected, dropped \(dropped), "
                 + "leaf-only \(leafOnly), mean stack depth \(format(meanDepth, 1)), "
                 + "windows not covering the run \(uncovered)")
        summary.record("overhead.\(k).cpu", [cpu.median, cpu.min, cpu.max, Double(cpu.count),
                                              cpu.quantile(0.25), cpu.quantile(0.75)])
        summary.record("overhead.\(k).wall", [wall.median, wall.min, wall.max, Double(wall.count),
                                               wall.quantile(0.25), wall.quantile(0.75)])
        summary.record("overhead.\(k).per_sample_ns", [cost.median, cost.min, cost.max, Double(cost.count)])
        summary.record("overhead.\(k).worker_per_sample_ns", [workerCost.median, workerCost.min, workerCost.max,
                                                              Double(workerCost.count)])
        summary.record("overhead.\(k).background_ns_per_s", [backgroundCost.median, backgroundCost.min,
                                                             backgroundCost.max, Double(backgroundCost.count)])
        summary.record("overhead.\(k).samples", [Double(received), expected, Double(dropped), Double(leafOnly),
                                                  meanDepth, Double(uncovered), share.min, share.max])
    }

    /// The client asks for `latencySeconds` and waits for the whole answer
    /// while every worker keeps busy: how long after the request it arrives.
    private static func latency(pool: WorkerPool, port: Int, _ options: Options, _ summary: Summary) {
        let n = options.latencySeconds
        printOut("### profile response time: seconds=\(n), \(pool.threads) busy threads, client waits")
        var times: [Double] = []
        var dropped: Int64 = 0
        for repetition in 0..<options.latencyRepetitions {
            let request = ProfileRequest(port: port, seconds: n)
            while !request.isAnswered { _ = pool.run(iterationsPerThread: 2_000_000 / pool.threads + 1) }
            let profile = request.finish()
            let seconds = Double(request.answeredAtNanoseconds - request.sentAtNanoseconds) / 1e9
            times.append(seconds)
            dropped += profile.droppedSamples ?? 0
            printOut("request \(repetition + 1): answered after \(format(seconds, 3)) s "
                     + "(profile duration \(format(Double(profile.durationNanoseconds) / 1e9, 3)) s, "
                     + "\(profile.samples) samples, dropped \(profile.droppedSamples.map { "\($0)" } ?? "?"))")
        }
        let d = Distribution(times)
        summary.record("latency", [Double(n), d.median, d.min, d.max, Double(d.count), Double(dropped)])
    }

    private static func ms(_ ns: Int64) -> String { format(Double(ns) / 1e6, 1) + " ms" }
}
