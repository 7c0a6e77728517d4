import Glibc
import Synchronization
import Testing

@testable import Pprof

// The tests' HTTP clients over raw sockets, what URLSession would hide:
// `TestHTTP`, one request per connection with deadlines and a strict reader
// (`StrictResponse`); `RawClient`, one connection for keep-alive, pipelining
// and partial sends. Also the one locked box for values shared between
// threads, and waiting for a condition.

struct ClientError: Error, CustomStringConvertible {
    let description: String
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

    /// Reads `count` responses (fewer if the server closes first, or if one
    /// is malformed: that is recorded as a test issue).
    func readResponses(_ count: Int, bodyless: Bool = false) -> [StrictResponse] {
        var responses: [StrictResponse] = []
        while responses.count < count {
            if let (response, consumed) = StrictResponse.first(pending[...], bodyless: bodyless) {
                responses.append(response)
                pending.removeFirst(consumed)
                continue
            }
            if !receive() { break }
        }
        return responses
    }

    func readResponse(bodyless: Bool = false) throws -> StrictResponse {
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

// MARK: - One request per connection, with deadlines

/// The tests' one-request client: `Connection: close`, everything read until
/// the server closes (with a deadline), the answer parsed strictly
/// (`StrictResponse`). For keep-alive, pipelining and partial sends, use
/// `RawClient`.
enum TestHTTP {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// Connects to host:port; a connect interrupted by SIGPROF is completed.
    static func connect(port: Int, host: String = "127.0.0.1") throws -> Int32 {
        let (fd, code) = RawClient.connect(.tcp(host: host, port: port))
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
    static func exchange(port: Int, host: String = "127.0.0.1", bytes: [UInt8], halfClose: Bool = true,
                         timeoutSeconds: Double = 20) throws -> Exchange {
        let fd = try connect(port: port, host: host)
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

    /// Everything read from `fd` (a socket or a pipe) until EOF or a reset,
    /// or until `timeoutSeconds` pass (`closed` false). A socket is read in
    /// blocking calls bounded by SO_RCVTIMEO, not after poll: a thread dump
    /// taken meanwhile then walks from the read into the caller's frames
    /// (tests look for their own function in it); from poll the
    /// frame-pointer walk loses the caller.
    static func readUntilClosed(_ fd: Int32, timeoutSeconds: Double) -> Exchange {
        let end = monotonicSeconds() + timeoutSeconds
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        let isSocket = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let left = end - monotonicSeconds()
            if left <= 0 { return Exchange(bytes: out, closed: false) }
            if isSocket {
                var timeout = timeval(tv_sec: Int(left), tv_usec: Int((left - Double(Int(left))) * 1e6) + 1)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            } else {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let rc = poll(&entry, 1, Int32(min(left * 1000 + 1, 60_000)))
                if rc < 0 { if errno == EINTR { continue }; return Exchange(bytes: out, closed: true) }
                if rc == 0 { continue }
            }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { out += chunk[0..<n]; continue }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue } // EAGAIN: a socket's timeout, checked above
            return Exchange(bytes: out, closed: true) // EOF or reset
        }
    }

    /// One request with `Connection: close` to host:port; the response read strictly.
    static func request(port: Int, host: String = "127.0.0.1", method: String = "GET", target: String,
                        body: [UInt8] = [], headers: [String] = [], timeoutSeconds: Double = 120) throws -> StrictResponse {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: \(host.contains(":") ? "[\(host)]" : host):\(port)\r\nConnection: close\r\n"
        for h in headers { head += h + "\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        let result = try exchange(port: port, host: host, bytes: Array(head.utf8) + body, halfClose: false,
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

    /// The final (non-1xx) response of a whole exchange, read strictly.
    static func parse(_ bytes: [UInt8], method: String = "GET") throws -> StrictResponse {
        let responses = try StrictResponse.parseStream(bytes[...], bodyless: { _ in method == "HEAD" })
        guard let last = responses.last, last.status >= 200,
              responses.filter({ $0.status >= 200 }).count == 1 else {
            throw Failure(description: "\(responses.count) responses (\(responses.map(\.status)))")
        }
        return last
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
        guard let parsed = try parsePrefix(bytes, bodyless: bodyless) else {
            throw Malformed(description: "incomplete: \(String(decoding: bytes.prefix(200), as: UTF8.self).debugDescription)")
        }
        return parsed
    }

    /// The first response in `bytes`, or nil if it is malformed (recorded as
    /// a test issue) or not complete yet; `consumed` is the bytes it takes.
    static func first(_ bytes: ArraySlice<UInt8>, bodyless: Bool,
                      sourceLocation: SourceLocation = #_sourceLocation) -> (response: StrictResponse, consumed: Int)? {
        do {
            return try parsePrefix(bytes, bodyless: bodyless)
        } catch {
            Issue.record("malformed response: \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    /// The first response in `bytes` and the bytes it takes; nil while it is
    /// incomplete. Throws on anything malformed.
    static func parsePrefix(_ bytes: ArraySlice<UInt8>, bodyless: Bool) throws -> (response: StrictResponse, consumed: Int)? {
        let crlfcrlf: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.firstRange(of: crlfcrlf) else { return nil }
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
        guard bytes.endIndex - bodyStart >= bodyLength else { return nil }
        response.body = Array(bytes[bodyStart..<(bodyStart + bodyLength)])
        return (response, bodyStart + bodyLength - bytes.startIndex)
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

