import Glibc
import Synchronization

@testable import Pprof

// The tests' HTTP client over raw sockets (keep-alive, pipelining, partial
// sends: what URLSession would hide), the one locked box for values shared
// between threads, and waiting for a condition.

struct ClientError: Error, CustomStringConvertible {
    let description: String
}

/// One parsed response.
struct RawResponse {
    var status: Int
    var reason: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var text: String { String(decoding: body, as: UTF8.self) }

    /// Parses one response at the start of `bytes`; nil if incomplete.
    static func parse(_ bytes: ArraySlice<UInt8>, bodyless: Bool) -> (RawResponse, consumed: Int)? {
        let terminator: [UInt8] = Array("\r\n\r\n".utf8)
        guard bytes.count >= 4,
              let end = (bytes.startIndex...(bytes.endIndex - 4)).first(where: {
                  Array(bytes[$0..<($0 + 4)]) == terminator
              }) else { return nil }
        let head = String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0] == "HTTP/1.1", let status = Int(parts[1]) else { return nil }
        var response = RawResponse(status: status, reason: parts.count > 2 ? String(parts[2]) : "",
                                   headers: [], body: [])
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let value = line[line.index(after: colon)...].drop(while: { $0 == " " })
            response.headers.append((String(line[..<colon]), String(value)))
        }
        let bodyStart = end + 4
        let length = bodyless ? 0 : Int(response.header("Content-Length") ?? "0") ?? 0
        guard bytes.endIndex - bodyStart >= length else { return nil }
        response.body = Array(bytes[bodyStart..<(bodyStart + length)])
        return (response, bodyStart + length - bytes.startIndex)
    }
}

/// A blocking client socket with a 10 s receive timeout.
final class RawClient {
    let fd: Int32
    private var pending: [UInt8] = []
    private var closed = false

    init(_ address: ListenAddress) throws {
        let (fd, error) = Self.connect(address)
        guard fd >= 0 else { throw ClientError(description: "connect: errno \(error)") }
        self.fd = fd
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close() }

    /// Connects; returns the socket, or -1 and the errno.
    static func connect(_ address: ListenAddress) -> (Int32, Int32) {
        let stream = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        switch address {
        case let .tcp(host, port):
            var hints = addrinfo()
            hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &list) == 0, let info = list else { return (-1, EINVAL) }
            defer { freeaddrinfo(list) }
            let fd = socket(info.pointee.ai_family, stream, 0)
            return finishConnect(fd, Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen))
        case let .unix(path):
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: Array(path.utf8) + [0])
            }
            let fd = socket(AF_UNIX, stream, 0)
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            return finishConnect(fd, rc)
        }
    }

    /// A connect interrupted by a signal (SIGPROF while profiling) goes on
    /// in the background: wait for it and fetch its outcome.
    private static func finishConnect(_ fd: Int32, _ rc: Int32) -> (Int32, Int32) {
        var code = rc == 0 ? 0 : errno
        if code == EINTR {
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var ready: Int32
            repeat { ready = poll(&entry, 1, 10_000) } while ready < 0 && errno == EINTR
            var length = socklen_t(MemoryLayout<Int32>.size)
            code = ETIMEDOUT
            if ready > 0 { getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) }
        }
        if code != 0 {
            Glibc.close(fd)
            return (-1, code)
        }
        return (fd, 0)
    }

    func send(_ text: String) {
        send(Array(text.utf8))
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
        }
    }

    /// One recv into `pending`; false on EOF, error or timeout.
    private func receive() -> Bool {
        var scratch = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                pending += scratch[0..<n]
                return true
            }
            if n < 0 && errno == EINTR { continue }
            return false
        }
    }

    /// Everything until the server closes. `eof` is false on a timeout.
    func readToEnd() -> (bytes: [UInt8], eof: Bool) {
        while true {
            var scratch = [UInt8](repeating: 0, count: 65536)
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { pending += scratch[0..<n]; continue }
            if n < 0 && errno == EINTR { continue }
            let result = pending
            pending = []
            return (result, n == 0 || errno == ECONNRESET)
        }
    }

    /// Reads `count` responses (fewer if the server closes first).
    func readResponses(_ count: Int, bodyless: Bool = false) -> [RawResponse] {
        var responses: [RawResponse] = []
        while responses.count < count {
            if let (response, consumed) = RawResponse.parse(pending[...], bodyless: bodyless) {
                responses.append(response)
                pending.removeFirst(consumed)
                continue
            }
            if !receive() { break }
        }
        return responses
    }

    func readResponse(bodyless: Bool = false) throws -> RawResponse {
        guard let response = readResponses(1, bodyless: bodyless).first else {
            throw ClientError(description: "no response")
        }
        return response
    }

    /// Whether bytes (or EOF) are waiting right now.
    var hasInput: Bool {
        if !pending.isEmpty { return true }
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) > 0
    }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }
}

// MARK: - Helpers

/// A value shared between threads under a lock: the tests' one locked box.
final class Locked<Value>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var stored: Value

    init(_ value: Value) { stored = value }

    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try lock.withLock { try body(&stored) }
    }
}

/// Polls `condition` every 5 ms for up to `seconds`.
func waitUntil(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Deadline.now().adding(milliseconds: Int(seconds * 1000))
    while !condition() {
        if deadline.hasPassed { return false }
        usleep(5_000)
    }
    return true
}

