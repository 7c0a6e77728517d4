import Glibc
import Pprof

/// `gperftools`: the same workload, in a child process of this very binary
/// (`workload-only`), under gperftools' CPU profiler (LD_PRELOAD of
/// libprofiler, CPUPROFILE, 100 Hz) and without it, alternating.
enum Gperftools {
    static let defaultLibrary = "/usr/lib/x86_64-linux-gnu/libprofiler.so"

    struct Options {
        var threadCounts = [1, 2, 32]
        var pairs = 11
        var iterations = Overhead.Options().iterations
        var depth = Overhead.Options().depth
        var hz = 100
        var library = Gperftools.defaultLibrary
        var summary: String?
    }

    /// How a child process runs the workload.
    enum Variant: Int, CaseIterable {
        case unprofiled, gperftools, swiftPprof
    }

    struct ChildRun {
        var times: RunTimes
        var samples: Int64   // in the profile; 0 when unprofiled
        var dropped: Int64   // swift-pprof's dropped_samples; 0 otherwise
    }

    static func run(_ options: Options) {
        let summary = Summary(path: options.summary)
        guard access(options.library, R_OK) == 0 else {
            fatal("\(options.library) is missing: apt-get install libgoogle-perftools-dev")
        }
        let directory = makeTemporaryDirectory()
        let profilePath = directory + "/workload.prof"
        let stderrPath = directory + "/stderr"
        defer { unlink(stderrPath); rmdir(directory) }
        printOut("## gperftools: \(options.iterations) iterations per run over K threads, \(options.pairs) rounds, "
                 + "one child process per run: unprofiled, LD_PRELOAD=\(options.library) "
                 + "CPUPROFILE_FREQUENCY=\(options.hz), and swift-pprof (PprofServer + HTTP client in the child)")
        for k in options.threadCounts {
            printOut("### K = \(k) threads")
            let perThread = options.iterations / k
            let arguments = ["workload-only", "--threads", "\(k)", "--iterations", "\(perThread * k)",
                             "--depth", "\(options.depth)", "--hz", "\(options.hz)"]
            func child(_ variant: Variant) -> ChildRun {
                switch variant {
                case .unprofiled:
                    return runChild(arguments, extraEnvironment: [], stderrPath: stderrPath)
                case .swiftPprof:
                    return runChild(arguments + ["--profile", "swift-pprof"], extraEnvironment: [], stderrPath: stderrPath)
                case .gperftools:
                    var run = runChild(arguments, extraEnvironment: [
                        "LD_PRELOAD=\(options.library)", "CPUPROFILE=\(profilePath)",
                        "CPUPROFILE_FREQUENCY=\(options.hz)"], stderrPath: stderrPath)
                    run.samples = countSamples(inProfileAt: profilePath)
                    unlink(profilePath)
                    return run
                }
            }
            for variant in Variant.allCases { _ = child(variant) } // warm-up, not counted
            var ratios: [Variant: (cpu: [Double], wall: [Double])] = [.gperftools: ([], []), .swiftPprof: ([], [])]
            var received: [Variant: Int64] = [:], expected: [Variant: Double] = [:], dropped: Int64 = 0
            for round in 0..<options.pairs {
                // Each round runs all three; the order rotates from round to round.
                var runs: [Variant: ChildRun] = [:]
                for i in 0..<3 {
                    let variant = Variant(rawValue: (i + round) % 3)!
                    runs[variant] = child(variant)
                }
                let plain = runs[.unprofiled]!
                var line = "round \(round + 1): unprofiled cpu \(ms(plain.times.processCPUNanoseconds)) "
                    + "wall \(ms(plain.times.wallNanoseconds))"
                for variant in [Variant.gperftools, .swiftPprof] {
                    let run = runs[variant]!
                    if run.times.checksum != plain.times.checksum { fatal("the workload's checksum changed") }
                    let cpu = Double(run.times.processCPUNanoseconds) / Double(plain.times.processCPUNanoseconds)
                    let wall = Double(run.times.wallNanoseconds) / Double(plain.times.wallNanoseconds)
                    let want = Double(run.times.workerCPUNanoseconds) * Double(options.hz) / 1e9
                    ratios[variant]!.cpu.append(cpu)
                    ratios[variant]!.wall.append(wall)
                    received[variant, default: 0] += run.samples
                    expected[variant, default: 0] += want
                    if variant == .swiftPprof { dropped += run.dropped }
                    line += "; \(name(variant)) cpu \(ms(run.times.processCPUNanoseconds)) "
                        + "wall \(ms(run.times.wallNanoseconds)), cpu ratio \(format(cpu, 4)), "
                        + "wall ratio \(format(wall, 4)), samples \(run.samples)/\(format(want, 1))"
                }
                printOut(line)
            }
            for variant in [Variant.gperftools, .swiftPprof] {
                let cpu = Distribution(ratios[variant]!.cpu), wall = Distribution(ratios[variant]!.wall)
                let key = variant == .gperftools ? "gperftools.\(k)" : "child.\(k)"
                printOut("K=\(k): \(name(variant)) cpu ratio median \(format(cpu.median, 4)) "
                         + "[\(format(cpu.min, 4)) … \(format(cpu.max, 4))], wall ratio median \(format(wall.median, 4)) "
                         + "[\(format(wall.min, 4)) … \(format(wall.max, 4))]; samples \(received[variant] ?? 0) of "
                         + "\(format(expected[variant] ?? 0, 0)) expected"
                         + (variant == .swiftPprof ? ", dropped \(dropped)" : " (whole child lifetime)"))
                summary.record("\(key).cpu", [cpu.median, cpu.min, cpu.max, Double(cpu.count),
                                               cpu.quantile(0.25), cpu.quantile(0.75)])
                summary.record("\(key).wall", [wall.median, wall.min, wall.max, Double(wall.count),
                                                wall.quantile(0.25), wall.quantile(0.75)])
                summary.record("\(key).samples", [Double(received[variant] ?? 0), expected[variant] ?? 0,
                                                   variant == .swiftPprof ? Double(dropped) : 0])
            }
        }
        summary.write()
    }

    private static func name(_ variant: Variant) -> String {
        switch variant {
        case .unprofiled: "unprofiled"
        case .gperftools: "gperftools"
        case .swiftPprof: "swift-pprof"
        }
    }

    /// `workload-only`: runs the workload once in a fresh process and prints
    /// `wall_ns process_cpu_ns worker_cpu_ns checksum samples dropped` for
    /// the parent. With `profileSelf`, profiles itself with swift-pprof the
    /// way `overhead` does (server, client thread, hang up after the run).
    static func workloadOnly(threads: Int, iterations: Int, depth: Int, hz: Int, profileSelf: Bool) {
        let pool = WorkerPool(threads: threads, depth: depth)
        if !profileSelf {
            let t = pool.run(iterationsPerThread: iterations / threads)
            pool.shutdown()
            printOut("\(t.wallNanoseconds) \(t.processCPUNanoseconds) \(t.workerCPUNanoseconds) \(t.checksum) 0 0")
            return
        }
        let server: PprofServer
        do {
            server = try PprofServer.start(.init(host: "127.0.0.1", port: 0, cpuSamplingRate: hz))
        } catch {
            fatal("cannot start the pprof server: \(error)")
        }
        let run = Overhead.profiled(pool, iterations / threads, port: server.port ?? 0,
                                    seconds: Overhead.Options().requestSeconds)
        pool.shutdown()
        server.stop()
        let t = run.times
        printOut("\(t.wallNanoseconds) \(t.processCPUNanoseconds) \(t.workerCPUNanoseconds) \(t.checksum) "
                 + "\(run.profile.samples) \(run.profile.droppedSamples ?? -1)")
    }

    /// Runs this executable with `arguments` and the current environment
    /// (less any LD_PRELOAD or CPUPROFILE*) plus `extraEnvironment`.
    private static func runChild(_ arguments: [String], extraEnvironment: [String], stderrPath: String) -> ChildRun {
        let executable = selfExecutable()
        var environment: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            let variable = String(cString: pointer)
            if !variable.hasPrefix("LD_PRELOAD=") && !variable.hasPrefix("CPUPROFILE") { environment.append(variable) }
            entry += 1
        }
        environment += extraEnvironment

        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { fatal("pipe: errno \(errno)") }
        _ = fcntl(pipeEnds[0], F_SETFD, FD_CLOEXEC) // the child gets only its dup2'd stdout
        _ = fcntl(pipeEnds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
        // gperftools reports on stderr at exit; keep it for errors only.
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer { posix_spawn_file_actions_destroy(&actions) }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        close(pipeEnds[1])
        guard rc == 0 else { fatal("posix_spawn \(executable): \(rc)") }

        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(pipeEnds[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            output.append(contentsOf: chunk[0..<n])
        }
        close(pipeEnds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let fields = String(decoding: output, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard status == 0, fields.count == 6, let wall = Int64(fields[0]), let cpu = Int64(fields[1]),
              let workers = Int64(fields[2]), let checksum = UInt64(fields[3]), let samples = Int64(fields[4]),
              let dropped = Int64(fields[5]) else {
            let errors = String(decoding: readFile(stderrPath) ?? [], as: UTF8.self)
            fatal("workload child failed (status \(status)): \(String(decoding: output, as: UTF8.self))\n\(errors)")
        }
        let times = RunTimes(wallNanoseconds: wall, processCPUNanoseconds: cpu, workerCPUNanoseconds: workers,
                             checksum: checksum)
        return ChildRun(times: times, samples: samples, dropped: dropped)
    }

    /// Samples in a gperftools CPU profile (its legacy binary format: a
    /// header of five words, then records of count, depth and that many
    /// PCs, ended by the record 0, 1, 0).
    private static func countSamples(inProfileAt path: String) -> Int64 {
        guard let bytes = readFile(path), bytes.count >= 40 else { fatal("no gperftools profile at \(path)") }
        let words: [UInt64] = bytes.withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self) }
        }
        guard words[0] == 0, words[1] == 3 else { fatal("\(path) is not a gperftools CPU profile") }
        let headerWords = Int(words[1]) + 2
        var i = headerWords
        var total: Int64 = 0
        while i + 1 < words.count {
            let count = words[i], depth = words[i + 1]
            if count == 0 && depth == 1 { break } // trailer
            total += Int64(count)
            i += 2 + Int(depth)
        }
        return total
    }

    private static func selfExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { fatal("readlink /proc/self/exe: errno \(errno)") }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func makeTemporaryDirectory() -> String {
        var template = Array("/tmp/pprof-benchmarks-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { fatal("mkdtemp: errno \(errno)") }
        return String(cString: made)
    }

    private static func ms(_ ns: Int64) -> String { format(Double(ns) / 1e6, 1) + " ms" }
}
