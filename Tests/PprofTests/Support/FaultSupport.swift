import CPprof
import Glibc
import Synchronization

@testable import Pprof

// Shared by the hardening tests (HTTPFuzzTests, ParameterTests, Fault*Tests):
// a seeded random generator, raw threads, a strict HTTP response reader, and a
// way to run one test in a fresh child process.

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

/// A list shared between threads.
final class FaultList<Element: Sendable>: Sendable {
    private let items = Mutex<[Element]>([])
    func append(_ item: Element) { items.withLock { $0.append(item) } }
    var all: [Element] { items.withLock { $0 } }
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

// MARK: - HTTP over raw sockets, with deadlines

enum FaultHTTP {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// Connects to 127.0.0.1:port; a connect interrupted by SIGPROF is completed.
    static func connect(port: Int) throws -> Int32 {
        let (fd, code) = RawClient.connect(.tcp(host: "127.0.0.1", port: port))
        guard fd >= 0 else { throw Failure(description: "connect: errno \(code)") }
        return fd
    }

    struct Exchange {
        var bytes: [UInt8]
        /// The server closed the connection (EOF or reset) before the deadline.
        var closed: Bool
    }

    /// Sends `bytes` (half-closing afterwards if asked), then reads until the
    /// server closes or `timeoutSeconds` pass.
    static func exchange(port: Int, bytes: [UInt8], halfClose: Bool = true,
                         timeoutSeconds: Double = 20) throws -> Exchange {
        let fd = try connect(port: port)
        defer { close(fd) }
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break } // the server closed early (after an error answer): read what it said
            sent += n
        }
        if halfClose { _ = shutdown(fd, Int32(SHUT_WR)) }
        return readUntilClosed(fd, timeoutSeconds: timeoutSeconds)
    }

    static func readUntilClosed(_ fd: Int32, timeoutSeconds: Double) -> Exchange {
        let end = monotonicSeconds() + timeoutSeconds
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let left = end - monotonicSeconds()
            if left <= 0 { return Exchange(bytes: out, closed: false) }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let rc = poll(&entry, 1, Int32(min(left * 1000 + 1, 60_000)))
            if rc < 0 { if errno == EINTR { continue }; return Exchange(bytes: out, closed: true) }
            if rc == 0 { continue }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } // sockets and pipes
            if n > 0 { out += chunk[0..<n]; continue }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            return Exchange(bytes: out, closed: true) // EOF or reset
        }
    }

    /// One request with `Connection: close`; the response read strictly.
    /// How long a request may take before the test calls it hung: 30 s, and
    /// 120 s under ThreadSanitizer, where a 1000-thread dump on a loaded
    /// 2-core machine took over 30 s (not a hang: it finishes).
    static let hangDetectorSeconds: Double = runningUnderThreadSanitizer ? 120 : 30

    static func request(port: Int, method: String = "GET", target: String, body: [UInt8] = [],
                        headers: [String] = [], timeoutSeconds: Double = hangDetectorSeconds) throws -> StrictResponse {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for h in headers { head += h + "\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        let result = try exchange(port: port, bytes: Array(head.utf8) + body, halfClose: false,
                                  timeoutSeconds: timeoutSeconds)
        guard result.closed else {
            throw Failure(description: "\(method) \(target): no complete answer within \(timeoutSeconds) s (\(result.bytes.count) bytes)")
        }
        let responses = try StrictResponse.parseStream(result.bytes[...], bodyless: { _ in method == "HEAD" })
        guard responses.count == 1, let response = responses.first else {
            throw Failure(description: "\(method) \(target): \(responses.count) responses")
        }
        return response
    }
}

/// A response read by rules stricter than any client's: a status line
/// `HTTP/1.1 NNN Reason`, token header names, printable values, exactly one
/// Content-Length, a body of exactly that length, nothing left over.
struct StrictResponse: Sendable {
    var status: Int
    var reason: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { asciiCaseInsensitiveEqual($0.name, name) }?.value
    }

    var text: String { String(decoding: body, as: UTF8.self) }

    struct Malformed: Error, CustomStringConvertible { var description: String }

    /// Every response in `bytes`, in order; 1xx interim responses are
    /// returned too. `bodyless(i)` says whether the i-th final response
    /// answers a HEAD request. Throws on anything malformed or left over.
    static func parseStream(_ bytes: ArraySlice<UInt8>, bodyless: (Int) -> Bool) throws -> [StrictResponse] {
        var rest = bytes
        var out: [StrictResponse] = []
        var finals = 0
        while !rest.isEmpty {
            let (response, consumed) = try parseOne(rest, bodyless: bodyless(finals))
            out.append(response)
            if response.status >= 200 { finals += 1 }
            rest = rest.dropFirst(consumed)
        }
        return out
    }

    private static func parseOne(_ bytes: ArraySlice<UInt8>, bodyless: Bool) throws -> (StrictResponse, Int) {
        let crlfcrlf: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.firstRange(of: crlfcrlf) else {
            throw Malformed(description: "incomplete head: \(String(decoding: bytes.prefix(200), as: UTF8.self).debugDescription)")
        }
        let head = String(decoding: bytes[bytes.startIndex..<end.lowerBound], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "HTTP/1.1", parts[1].count == 3,
              let status = Int(parts[1]), (100...599).contains(status), !parts[2].isEmpty,
              parts[2] == HTTPResponse.reasonPhrase(for: status) else {
            throw Malformed(description: "bad status line \(String(statusLine).debugDescription)")
        }
        var response = StrictResponse(status: status, reason: String(parts[2]), headers: [], body: [])
        for line in lines {
            guard let colon = line.firstIndex(of: ":"), colon > line.startIndex,
                  line[..<colon].utf8.allSatisfy(isTokenByte) else {
                throw Malformed(description: "bad header line \(String(line).debugDescription)")
            }
            let value = line[line.index(after: colon)...].drop { $0 == " " }
            guard value.utf8.allSatisfy({ ($0 >= 0x20 && $0 != 0x7F) || $0 == 0x09 }) else {
                throw Malformed(description: "bad header value in \(String(line).debugDescription)")
            }
            response.headers.append((String(line[..<colon]), String(value)))
        }
        let bodyStart = end.upperBound
        if status < 200 { // interim: no body, no Content-Length
            guard response.header("Content-Length") == nil else { throw Malformed(description: "1xx with a body") }
            return (response, bodyStart - bytes.startIndex)
        }
        let lengths = response.headers.filter { asciiCaseInsensitiveEqual($0.name, "Content-Length") }
        guard lengths.count == 1, let length = Int(lengths[0].value), length >= 0 else {
            throw Malformed(description: "status \(status): Content-Length \(lengths.map(\.value))")
        }
        guard response.header("Transfer-Encoding") == nil else { throw Malformed(description: "Transfer-Encoding sent") }
        let bodyLength = bodyless ? 0 : length
        guard bytes.endIndex - bodyStart >= bodyLength else {
            throw Malformed(description: "status \(status): body \(bytes.endIndex - bodyStart) of \(bodyLength) bytes")
        }
        response.body = Array(bytes[bodyStart..<(bodyStart + bodyLength)])
        return (response, bodyStart + bodyLength - bytes.startIndex)
    }
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
        guard let exe = faultReadLink("/proc/self/exe") else { throw FaultHTTP.Failure(description: "no /proc/self/exe") }
        return try runProcess(wrapper + [exe, "--testing-library", "swift-testing", "--filter", filter],
                              environment: ["\(variable)=\(scenario)"], timeoutSeconds: timeoutSeconds)
    }
}

/// Runs `arguments` (the first is a path) with this process's environment
/// plus `environment` (NAME=value); stdout and stderr together. Killed
/// after `timeoutSeconds`.
func runProcess(_ arguments: [String], environment extra: [String] = [], timeoutSeconds: Double) throws -> ChildProcessTest.Outcome {
    var pipeFDs: [Int32] = [-1, -1]
    guard pipe(&pipeFDs) == 0 else { throw FaultHTTP.Failure(description: "pipe: errno \(errno)") }
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
        throw FaultHTTP.Failure(description: "posix_spawn \(arguments[0]): \(rc)")
    }
    let result = FaultHTTP.readUntilClosed(pipeFDs[0], timeoutSeconds: timeoutSeconds)
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
