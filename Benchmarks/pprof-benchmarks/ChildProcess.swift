import Glibc

/// A child process run to completion: its stdout, exit status, and the CPU
/// time of its whole process tree (wait4's rusage covers every descendant it
/// waited for, e.g. heaptrack's interpreter).
struct ChildOutput {
    var status: Int32
    var stdout: String
    var wallNanoseconds: Int64
    var treeCPUNanoseconds: Int64

    /// The fields of the last `RESULT` line the child printed (other tools
    /// wrapped around it, like heaptrack, print on the same stdout).
    func resultFields(_ what: String) -> [Substring] {
        guard status == 0,
              let line = stdout.split(separator: "\n").last(where: { $0.hasPrefix("RESULT ") }) else {
            fatal("\(what): child failed (status \(status)):\n\(stdout)")
        }
        return line.split(separator: " ").dropFirst().map { $0 }
    }
}

enum ChildProcess {
    /// Environment variables of profilers and allocators that a child must
    /// not inherit from the benchmark's own environment.
    static let scrubbed = ["LD_PRELOAD=", "CPUPROFILE", "HEAPPROFILE", "HEAP_PROFILE", "HEAPCHECK=", "PPROF_"]

    /// Runs `argv[0]` (a path) with `argv`, the current environment less
    /// `scrubbed`, plus `environment`; stderr goes to `stderrPath`.
    static func run(_ argv: [String], environment extra: [String] = [], stderrPath: String) -> ChildOutput {
        var environment: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            let variable = String(cString: pointer)
            if !scrubbed.contains(where: { variable.hasPrefix($0) }) { environment.append(variable) }
            entry += 1
        }
        environment += extra

        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { fatal("pipe: errno \(errno)") }
        _ = fcntl(pipeEnds[0], F_SETFD, FD_CLOEXEC) // the child gets only its dup2'd stdout
        _ = fcntl(pipeEnds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer { posix_spawn_file_actions_destroy(&actions) }

        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnvp = environment.map { strdup($0) } + [nil]
        defer { (cArgv + cEnvp).forEach { free($0) } }
        let started = monotonicNanoseconds()
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgv, cEnvp)
        close(pipeEnds[1])
        guard rc == 0 else { fatal("posix_spawn \(argv[0]): \(rc)") }

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
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let wall = monotonicNanoseconds() - started
        func ns(_ t: timeval) -> Int64 { Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_usec) * 1000 }
        var text = String(decoding: output, as: UTF8.self)
        if status != 0 {
            text += "\n--- stderr ---\n" + String(decoding: readFile(stderrPath) ?? [], as: UTF8.self)
        }
        return ChildOutput(status: status, stdout: text, wallNanoseconds: wall,
                           treeCPUNanoseconds: ns(usage.ru_utime) + ns(usage.ru_stime))
    }

    static func selfExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { fatal("readlink /proc/self/exe: errno \(errno)") }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func temporaryDirectory() -> String {
        var template = Array("/tmp/pprof-benchmarks-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { fatal("mkdtemp: errno \(errno)") }
        return String(cString: made)
    }

    /// Removes a directory and the plain files directly in it.
    static func removeDirectory(_ path: String) {
        guard let dir = opendir(path) else { return }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(dir)
        rmdir(path)
    }
}

/// One complete HTTP/1.1 GET over loopback (Connection: close), timed from
/// connect to the last byte, as a scraper or `go tool pprof` would see it.
struct HTTPGetResult {
    var status: Int
    var body: [UInt8]
    var nanoseconds: Int64
}

func httpGet(port: Int, target: String) -> HTTPGetResult {
    let started = monotonicNanoseconds()
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { fatal("socket: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    if rc != 0 { fatal("connect to 127.0.0.1:\(port): errno \(errno)") }
    let request = Array("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUser-Agent: pprof-benchmarks\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n".utf8)
    var sent = 0
    while sent < request.count {
        let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { fatal("send: errno \(errno)") }
        sent += n
    }
    var response: [UInt8] = []
    response.reserveCapacity(1 << 20)
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        response.append(contentsOf: chunk[0..<n])
    }
    let elapsed = monotonicNanoseconds() - started
    var headEnd = -1
    if response.count >= 4 {
        for i in 0...(response.count - 4) where response[i] == 13 && response[i + 1] == 10
            && response[i + 2] == 13 && response[i + 3] == 10 {
            headEnd = i
            break
        }
    }
    guard headEnd >= 0 else { fatal("GET \(target): no HTTP head in \(response.count) bytes") }
    let statusLine = String(decoding: response[0..<min(headEnd, 64)], as: UTF8.self)
    let status = statusLine.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return HTTPGetResult(status: status, body: Array(response[(headEnd + 4)...]), nanoseconds: elapsed)
}

/// `key=value` (an integer) in any of `lines`.
func keyValue(_ key: String, in lines: [String]) -> Int64? {
    for line in lines {
        for word in line.split(separator: " ") where word.hasPrefix(key + "=") {
            return Int64(word.dropFirst(key.count + 1))
        }
    }
    return nil
}
