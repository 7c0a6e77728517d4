import Glibc
import Testing

@testable import Pprof

/// Under an address-space limit (`ulimit -v`, RLIMIT_AS) a failed allocation
/// in Swift code traps: the profiler must refuse work it has no memory for
/// (503) rather than take the host down (issue 11, item 1). A child process
/// serves under a limit a little above what it already uses; this process
/// hammers it with 16 clients over every endpoint, then checks that it is
/// alive, that every answer was a well-formed 200 or 503, and that it still
/// answers a normal request.
@Suite("Faults: address-space limit")
struct FaultMemoryTests {
    /// Every endpoint, the two sampling ones with a 1 s window.
    static let targets = [
        "/debug/pprof/profile?seconds=1", "/debug/pprof/heap", "/debug/pprof/allocs",
        "/debug/pprof/goroutine?debug=0", "/debug/pprof/goroutine?debug=1", "/debug/pprof/goroutine?debug=2",
        "/debug/pprof/threadcreate", "/debug/pprof/symbol", "/debug/fgprof?seconds=1", "/debug/pprof/ui",
        "/debug/pprof/cmdline", "/debug/pprof/heap?debug=1", "/debug/pprof/",
    ]

    @Test("under RLIMIT_AS, 16 clients on every endpoint get 200 or 503 and the process lives")
    func survivesAnAddressSpaceLimit() throws {
        let directory = "/tmp/pprof-as-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(directory, 0o700) == 0 else { throw TestHTTP.Failure(description: "mkdir: errno \(errno)") }
        defer {
            unlink(directory + "/port")
            unlink(directory + "/stop")
            rmdir(directory)
        }
        let outcome = Locked<ChildProcessTest.Outcome?>(nil)
        let runner = faultSpawn {
            let result = try? ChildProcessTest.run(filter: "addressSpaceScenario", scenario: "address-space:" + directory,
                                                   timeoutSeconds: 150)
            outcome.value = result ?? ChildProcessTest.Outcome(exitStatus: nil, signal: nil, timedOut: false,
                                                               output: "the child could not be started")
        }
        #expect(runner != nil)
        var port = 0
        _ = waitUntil(seconds: 60) {
            port = faultReadFile(directory + "/port").flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0
            return port > 0 || outcome.value != nil
        }
        #expect(port > 0, "the child did not report its port")

        var statuses: [Int: Int] = [:]
        var failures: [String] = []
        if port > 0 {
            (statuses, failures) = hammer(port: port, seconds: Double(environmentInt("PPROF_AS_SECONDS", default: 8)))
            // The load has stopped: a normal request is answered.
            let index = try? TestHTTP.request(port: port, target: "/debug/pprof/cmdline", timeoutSeconds: 30)
            #expect(index?.status == 200, "after the load: \(String(describing: index?.status)) \(index?.text.prefix(200) ?? "")")
        }
        let stop = open(directory + "/stop", O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        if stop >= 0 { close(stop) }
        if let runner { pthread_join(runner, nil) }
        let child = outcome.value
        let output = child?.output.suffix(4000) ?? ""
        #expect(child?.exitStatus == 0, "child: exit \(String(describing: child?.exitStatus)), signal \(String(describing: child?.signal))\n\(output)")
        #expect(child?.output.contains("addressSpaceScenario: done") == true, "the scenario did not finish:\n\(output)")
        #expect(failures.count == 0, "\(failures.count) bad answers, first: \(failures.prefix(5))")
        #expect((statuses[200] ?? 0) > 0, "no request answered 200: \(statuses)")
        print("address-space hammer: statuses \(statuses.sorted { $0.key < $1.key })")
    }

    /// 16 clients looping over `targets` for `seconds`; counts by status, and
    /// what was neither a well-formed 200 nor a well-formed 503.
    private func hammer(port: Int, seconds: Double) -> ([Int: Int], [String]) {
        let statuses = Locked<[Int: Int]>([:])
        let failures = Locked<[String]>([])
        let end = monotonicSeconds() + seconds
        let threads = (0..<16).compactMap { client in
            faultSpawn(stackSize: 1 << 20) {
                var next = client
                while monotonicSeconds() < end {
                    let target = Self.targets[next % Self.targets.count]
                    next += 1
                    do {
                        let response = try TestHTTP.request(port: port, target: target, timeoutSeconds: 60)
                        statuses.withLock { $0[response.status, default: 0] += 1 }
                        if response.status != 200 && response.status != 503 {
                            failures.withLock { $0.append("\(target): \(response.status) \(response.text.prefix(120))") }
                        }
                    } catch {
                        failures.withLock { $0.append("\(target): \(error)") }
                        if "\(error)".contains("connect:") { return } // the child is gone
                    }
                }
            }
        }
        #expect(threads.count == 16)
        threads.forEach { pthread_join($0, nil) }
        return (statuses.value, failures.value)
    }

    /// Run by `survivesAnAddressSpaceLimit` in a child process: serves under
    /// a limit of what it uses now plus `PPROF_AS_HEADROOM_MB` (default 48),
    /// until the parent creates the stop file.
    @Test(.enabled(if: ChildProcessTest.scenario?.hasPrefix("address-space:") == true))
    func addressSpaceScenario() throws {
        let directory = String(ChildProcessTest.scenario?.dropFirst("address-space:".count) ?? "")
        let server = PprofServer(configuration: .init(port: 0))
        try server.start()
        defer { server.stop() }
        let port = try #require(server.port)
        let used = try #require(Self.addressSpaceBytes())
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_AS.rawValue), &limit)
        limit.rlim_cur = rlim_t(used + environmentInt("PPROF_AS_HEADROOM_MB", default: 48) << 20)
        #expect(setrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0)
        let text = Array(String(port).utf8)
        let fd = open(directory + "/port.tmp", O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        rename(directory + "/port.tmp", directory + "/port")
        let end = monotonicSeconds() + 120
        while access(directory + "/stop", F_OK) != 0 && monotonicSeconds() < end {
            usleep(50_000)
        }
        print("addressSpaceScenario: done")
    }

    /// This process's VmSize in bytes.
    static func addressSpaceBytes() -> Int? {
        let status = String(decoding: faultReadFile("/proc/self/status") ?? [], as: UTF8.self)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmSize:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
            return nil
        }
        return kib << 10
    }
}
