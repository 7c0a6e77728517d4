import CPprof
import Glibc
import Synchronization
import Testing

@testable import Pprof

// Shared by the hardening tests (HTTPFuzzTests, ParameterTests, Fault*Tests):
// a seeded random generator, raw threads, and a way to run one test in a
// fresh child process. (Their HTTP client is `TestHTTP`, in HTTPTestClient.swift.)

// MARK: - Deterministic randomness

/// SplitMix64: a tiny, seedable generator, so that a failing fuzz or hammer
/// run can be replayed from its seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The seed from the environment variable `name` (decimal or 0x hex), or `fallback`.
    static func seed(fromEnvironment name: String, default fallback: UInt64) -> UInt64 {
        guard let raw = getenv(name).map({ String(cString: $0) }) else { return fallback }
        if raw.hasPrefix("0x"), let v = UInt64(raw.dropFirst(2), radix: 16) { return v }
        return UInt64(raw) ?? fallback
    }
}

/// An integer from the environment, or `fallback`.
func environmentInt(_ name: String, default fallback: Int) -> Int {
    getenv(name).flatMap { Int(String(cString: $0)) } ?? fallback
}

// MARK: - Time and threads

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}


/// A flag set once, read from any thread.
final class FaultFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// A counter shared between threads.
final class FaultCounter: Sendable {
    private let value = Atomic<Int>(0)
    @discardableResult func add(_ n: Int = 1) -> Int { value.add(n, ordering: .relaxed).newValue }
    var count: Int { value.load(ordering: .relaxed) }
}

private final class FaultThreadBody: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Starts a joinable raw pthread (not Foundation, not Dispatch); nil if the
/// system refused one.
func faultSpawn(stackSize: Int = 0, _ body: @escaping @Sendable () -> Void) -> pthread_t? {
    let box = Unmanaged.passRetained(FaultThreadBody(body)).toOpaque()
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    defer { pthread_attr_destroy(&attr) }
    if stackSize > 0 { pthread_attr_setstacksize(&attr, stackSize) }
    var thread = pthread_t()
    let rc = pthread_create(&thread, &attr, { raw in
        Unmanaged<FaultThreadBody>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box)
    if rc != 0 {
        Unmanaged<FaultThreadBody>.fromOpaque(box).release()
        return nil
    }
    return thread
}

/// Burns CPU until `stop` is set; returns a value the optimizer cannot drop.
@inline(never) func faultBurn(until stop: FaultFlag) -> UInt64 {
    var x = workloadSeed
    while !stop.isSet {
        for i in 0..<20_000 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(truncatingIfNeeded: i) }
    }
    return x
}

/// Runs a CPU profile, waiting out a session that a test outside the CPU
/// sampling suite started with the C API directly (EBUSY).
func faultCPUProfile(seconds: Int64, hz: Int = 100, isCancelled: () -> Bool = { false }) throws -> CPUProfile {
    for _ in 0..<50 {
        let result: Result<CPUProfile, CPUProfilerError>
        do throws(CPUProfilerError) {
            result = .success(try CPUProfiler.shared.profile(seconds: seconds, hz: hz, isCancelled: isCancelled))
        } catch {
            result = .failure(error)
        }
        if case .failure(.startFailed(EBUSY)) = result {
            usleep(100_000)
            continue
        }
        return try result.get()
    }
    return try CPUProfiler.shared.profile(seconds: seconds, hz: hz, isCancelled: isCancelled)
}

func cpuStats() -> cpprof_cpu_stats {
    var s = cpprof_cpu_stats()
    cpprof_cpu_get_stats(&s)
    return s
}

/// The whole of a small file (/proc files report size 0), or nil.
func faultReadFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}

/// POSIX timers of this process that signal SIGPROF, from /proc/self/timers.
func sigprofTimerCount() -> Int {
    let text = String(decoding: faultReadFile("/proc/self/timers") ?? [], as: UTF8.self)
    return text.split(separator: "\n").filter { $0.hasPrefix("signal: \(SIGPROF)/") }.count
}

// MARK: - Running one test in a fresh process

/// Some faults need a process in which the library has not installed its
/// signal handlers yet. The test binary runs itself again, with a filter
/// that selects one test and an environment variable naming the scenario;
/// that test is enabled only in the child.
enum ChildProcessTest {
    static let variable = "PPROF_FAULT_CHILD"

    /// The scenario this process was started for, if it is such a child.
    static var scenario: String? { getenv(variable).map { String(cString: $0) } }

    struct Outcome {
        var exitStatus: Int32?
        var signal: Int32?
        var timedOut: Bool
        var output: String
    }

    /// Runs the test(s) matching `filter` in a child process with
    /// `PPROF_FAULT_CHILD=scenario`; kills it after `timeoutSeconds`.
    /// `wrapper` (e.g. strace and its options) goes before the test binary.
    static func run(filter: String, scenario: String, wrapper: [String] = [],
                    timeoutSeconds: Double = 60) throws -> Outcome {
        guard let exe = faultReadLink("/proc/self/exe") else { throw TestHTTP.Failure(description: "no /proc/self/exe") }
        return try runProcess(wrapper + [exe, "--testing-library", "swift-testing", "--filter", filter],
                              environment: ["\(variable)=\(scenario)"], timeoutSeconds: timeoutSeconds)
    }

    /// Runs the scenario test `function` in a child process (see `run`) and
    /// records, at the caller's line, that the child exited with status 0
    /// and printed "`function`: `marker`" (the scenario ran to its end, not
    /// merely started). Returns the outcome for the test's own checks.
    @discardableResult
    static func expectScenario(_ function: String, scenario: String, wrapper: [String] = [],
                               timeoutSeconds: Double = 60, marker: String = "done",
                               sourceLocation: SourceLocation = #_sourceLocation) throws -> Outcome {
        let outcome = try run(filter: function, scenario: scenario, wrapper: wrapper, timeoutSeconds: timeoutSeconds)
        let tail = outcome.output.suffix(6000)
        #expect(outcome.exitStatus == 0,
                "child: exit \(String(describing: outcome.exitStatus)), signal \(String(describing: outcome.signal)), timed out \(outcome.timedOut)\n\(tail)",
                sourceLocation: sourceLocation)
        #expect(outcome.output.contains("\(function): \(marker)"), "the scenario did not run to its end:\n\(tail)",
                sourceLocation: sourceLocation)
        return outcome
    }
}

/// Runs `arguments` (the first is a path) with this process's environment
/// plus `environment` (NAME=value); stdout and stderr together. Killed
/// after `timeoutSeconds`.
func runProcess(_ arguments: [String], environment extra: [String] = [], timeoutSeconds: Double) throws -> ChildProcessTest.Outcome {
    var pipeFDs: [Int32] = [-1, -1]
    guard pipe(&pipeFDs) == 0 else { throw TestHTTP.Failure(description: "pipe: errno \(errno)") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
    posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
    posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
    posix_spawn_file_actions_addclose(&actions, pipeFDs[1])

    let overridden = Set(extra.compactMap { $0.split(separator: "=", maxSplits: 1).first.map(String.init) })
    var environment: [String] = []
    var cursor = environ
    while let entry = cursor.pointee {
        let text = String(cString: entry)
        if let name = text.split(separator: "=", maxSplits: 1).first, !overridden.contains(String(name)) {
            environment.append(text)
        }
        cursor += 1
    }
    environment += extra
    let argv = arguments.map { strdup($0) } + [nil]
    let envp = environment.map { strdup($0) } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
    }
    var pid = pid_t()
    let rc = posix_spawn(&pid, arguments[0], &actions, nil, argv, envp)
    close(pipeFDs[1])
    guard rc == 0 else {
        close(pipeFDs[0])
        throw TestHTTP.Failure(description: "posix_spawn \(arguments[0]): \(rc)")
    }
    let result = TestHTTP.readUntilClosed(pipeFDs[0], timeoutSeconds: timeoutSeconds)
    close(pipeFDs[0])
    var status: Int32 = 0
    let end = monotonicSeconds() + (result.closed ? 10 : 0)
    var reaped = false
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { reaped = true; break }
        if r < 0 && errno != EINTR { break }
        if monotonicSeconds() > end { break }
        usleep(10_000)
    }
    if !reaped {
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
    let output = String(decoding: result.bytes, as: UTF8.self)
    let exited = reaped && (status & 0x7F) == 0
    let signalled = reaped && !exited && (status & 0x7F) != 0x7F
    return ChildProcessTest.Outcome(exitStatus: exited ? (status >> 8) & 0xFF : nil,
                                    signal: signalled ? status & 0x7F : nil,
                                    timedOut: !reaped, output: output)
}

func faultReadLink(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink(path, &buffer, buffer.count - 1)
    guard n > 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
