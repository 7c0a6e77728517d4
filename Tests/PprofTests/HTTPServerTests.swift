import Glibc
import Synchronization
import Testing

@testable import Pprof

// MARK: - Raw-socket test client

private struct ClientError: Error, CustomStringConvertible {
    let description: String
}

/// One parsed response.
private struct RawResponse {
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
private final class RawClient {
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

/// A value shared with handler threads.
private final class Shared<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { storage = Mutex(value) }
    var value: Value {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
}

/// Polls `condition` every 5 ms for up to `seconds`.
private func waitUntil(seconds: Int = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Deadline.secondsFromNow(seconds)
    while !condition() {
        if deadline.hasPassed { return false }
        usleep(5_000)
    }
    return true
}

private typealias Handler = @Sendable (HTTPRequest, HTTPClientConnection) -> HTTPResponse

private let echoHandler: Handler = { request, _ in
    HTTPResponse(status: 200, headers: [("Content-Type", "text/plain"), ("X-Method", request.method)],
                 body: Array(request.path.utf8))
}

private func startServer(handler: @escaping Handler = echoHandler) throws -> (HTTPServer, ListenAddress) {
    try startServer(configure: { _ in }, handler: handler)
}

private func startServer(configure: (inout HTTPServerConfiguration) -> Void,
                         handler: @escaping Handler = echoHandler) throws -> (HTTPServer, ListenAddress) {
    var configuration = HTTPServerConfiguration(address: .tcp(host: "127.0.0.1", port: 0))
    configure(&configuration)
    let server = HTTPServer(configuration: configuration, handler: handler)
    return (server, try server.start())
}

private func uniqueSocketPath() -> String {
    "/tmp/pprof-http-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
}

private func fileMode(_ path: String) -> mode_t? {
    var info = stat()
    return lstat(path, &info) == 0 ? info.st_mode : nil
}

private func canBindIPv6Loopback() -> Bool {
    let server = HTTPServer(configuration: .init(address: .tcp(host: "::1", port: 0))) { _, _ in
        HTTPResponse(status: 200)
    }
    defer { server.stop() }
    return (try? server.start()) != nil
}

// MARK: - Tests over sockets

@Suite("HTTP server")
struct HTTPServerTests {
    @Test func getReturnsStatusHeadersAndBody() throws {
        let seen = Shared<[String]>([])
        let (server, address) = try startServer { request, _ in
            seen.value = [request.method, request.target, request.path, request.rawQuery,
                          request.queryValue("b") ?? "nil", request.header("x-CUSTOM") ?? "nil"]
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain"), ("X-Test", "yes")],
                                body: Array("hello\n".utf8))
        }
        defer { server.stop() }
        guard case let .tcp(host, port) = address else { Issue.record("not tcp"); return }
        #expect(host == "127.0.0.1")
        #expect(port > 0)

        let client = try RawClient(address)
        client.send("GET /debug%20x/pprof?a=1&b=x+y%21 HTTP/1.1\r\nHost: t\r\nX-Custom:  v1 \r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.reason == "OK")
        #expect(response.header("X-Test") == "yes")
        #expect(response.header("Content-Type") == "text/plain")
        #expect(response.header("Content-Length") == "6")
        #expect(response.header("Date")?.hasSuffix(" GMT") == true)
        #expect(response.header("Connection") == nil)
        #expect(response.text == "hello\n")
        #expect(seen.value == ["GET", "/debug%20x/pprof?a=1&b=x+y%21", "/debug x/pprof", "a=1&b=x+y%21", "x y!", "v1"])
    }

    @Test func headSendsContentLengthButNoBody() throws {
        let (server, address) = try startServer { request, _ in
            HTTPResponse(status: 200, headers: [("X-Method", request.method)], body: Array("hello".utf8))
        }
        defer { server.stop() }
        let client = try RawClient(address)
        client.send("HEAD /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        let (bytes, eof) = client.readToEnd()
        #expect(eof)
        let parsed = RawResponse.parse(bytes[...], bodyless: true)
        #expect(parsed?.0.status == 200)
        #expect(parsed?.0.header("Content-Length") == "5")
        #expect(parsed?.0.header("X-Method") == "HEAD")
        #expect(parsed?.0.header("Connection") == "close")
        #expect(parsed?.consumed == bytes.count, "no body after the head")
    }

    @Test func pipelinedRequestsAreAnsweredInOrderOnOneConnection() throws {
        let (server, address) = try startServer()
        defer { server.stop() }
        let client = try RawClient(address)
        client.send("GET /first HTTP/1.1\r\nHost: t\r\n\r\n"
            + "POST /second HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
            + "GET /third HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        let responses = client.readResponses(3)
        #expect(responses.map(\.text) == ["/first", "/second", "/third"])
        #expect(responses.map { $0.header("X-Method") } == ["GET", "POST", "GET"])
        #expect(responses.last?.header("Connection") == "close")
        let rest = client.readToEnd()
        #expect(rest.eof && rest.bytes.isEmpty)
    }

    @Test func keepAliveServesSequentialRequestsAndHTTP10Closes() throws {
        let (server, address) = try startServer()
        defer { server.stop() }
        let client = try RawClient(address)
        for path in ["/a", "/b"] {
            client.send("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try client.readResponse().text == path)
        }
        let old = try RawClient(address)
        old.send("GET /old HTTP/1.0\r\n\r\n")
        let (bytes, eof) = old.readToEnd()
        #expect(eof)
        #expect(RawResponse.parse(bytes[...], bodyless: false)?.0.text == "/old")

        let oldKeepAlive = try RawClient(address)
        oldKeepAlive.send("GET /k1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        let first = try oldKeepAlive.readResponse()
        #expect(first.header("Connection") == "keep-alive")
        oldKeepAlive.send("GET /k2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(try oldKeepAlive.readResponse().text == "/k2")
    }

    @Test func postBodyReachesHandlerAndExpectContinueIsAnswered() throws {
        let (server, address) = try startServer { request, _ in
            HTTPResponse(status: 200, body: request.body)
        }
        defer { server.stop() }
        let client = try RawClient(address)
        client.send("POST /symbol HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        let interim = client.readResponses(1, bodyless: true)
        #expect(interim.first?.status == 100)
        client.send("0x123")
        #expect(try client.readResponse().text == "0x123")
    }

    @Test(arguments: [
        "GARBAGE\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/1.1 extra\r\n\r\n",
        "GET nothing HTTP/1.1\r\n\r\n",
        "GET /%zz HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nNo-Colon\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    ])
    func malformedRequestGets400AndClose(request: String) throws {
        let (server, address) = try startServer()
        defer { server.stop() }
        let client = try RawClient(address)
        client.send(request)
        let (bytes, eof) = client.readToEnd()
        #expect(eof, "connection closed")
        let response = RawResponse.parse(bytes[...], bodyless: false)?.0
        #expect(response?.status == 400)
        #expect(response?.header("Content-Type") == "text/plain; charset=utf-8")
        #expect(response?.header("X-Content-Type-Options") == "nosniff")
        #expect(response?.header("Connection") == "close")
        #expect(response?.text == "400 Bad Request\n")
    }

    @Test func unsupportedFeaturesGet501And505() throws {
        let (server, address) = try startServer()
        defer { server.stop() }
        for (request, status) in [
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
            ("GET / HTTP/2.0\r\n\r\n", 505),
        ] {
            let client = try RawClient(address)
            client.send(request)
            #expect(try client.readResponse().status == status)
        }
    }

    @Test func overlongRequestLineGets414() throws {
        let (server, address) = try startServer()
        defer { server.stop() }
        let client = try RawClient(address)
        client.send("GET /" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try client.readResponse().status == 414)

        // Exactly at the limit is fine.
        let okClient = try RawClient(address)
        let path = "/" + String(repeating: "b", count: 8192 - "GET  HTTP/1.1".count - 1)
        okClient.send("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try okClient.readResponse().status == 200)
    }

    @Test func oversizedHeadersGet431() throws {
        let (server, address) = try startServer(configure: { $0.maxHeaderCount = 10 })
        defer { server.stop() }
        let big = try RawClient(address)
        big.send("GET / HTTP/1.1\r\nX-Big: " + String(repeating: "x", count: 17 << 10) + "\r\n\r\n")
        let bigResponse = try big.readResponse()
        #expect(bigResponse.status == 431)
        #expect(bigResponse.reason == "Request Header Fields Too Large")

        func request(headers: Int) -> String {
            "GET / HTTP/1.1\r\n" + (0..<headers).map { "X-H\($0): v\r\n" }.joined() + "\r\n"
        }
        let many = try RawClient(address)
        many.send(request(headers: 11))
        #expect(try many.readResponse().status == 431)
        let enough = try RawClient(address)
        enough.send(request(headers: 10))
        #expect(try enough.readResponse().status == 200)
    }

    @Test func bodyOverTheLimitGets413() throws {
        let (server, address) = try startServer(configure: { $0.maxRequestBodyBytes = 16 }) { request, _ in
            HTTPResponse(status: 200, body: request.body)
        }
        defer { server.stop() }
        let tooBig = try RawClient(address)
        tooBig.send("POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n" + String(repeating: "z", count: 17))
        let (bytes, eof) = tooBig.readToEnd()
        #expect(eof)
        #expect(RawResponse.parse(bytes[...], bodyless: false)?.0.status == 413)

        let fits = try RawClient(address)
        fits.send("POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\n" + String(repeating: "y", count: 16))
        #expect(try fits.readResponse().text == String(repeating: "y", count: 16))
    }

    @Test func slowHandlerDoesNotBlockAnotherRequest() throws {
        let slowStarted = Shared(false)
        let fastAnswered = Shared(false)
        let releasedByFast = Shared<Bool?>(nil)
        let (server, address) = try startServer { request, _ in
            if request.path == "/slow" {
                slowStarted.value = true
                // Sleeps until the fast request was answered (at most 10 s).
                releasedByFast.value = waitUntil(seconds: 10) { fastAnswered.value }
                return HTTPResponse(status: 200, body: Array("slow".utf8))
            }
            return HTTPResponse(status: 200, body: Array("fast".utf8))
        }
        defer { server.stop() }
        let slow = try RawClient(address)
        slow.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(waitUntil { slowStarted.value })

        let fast = try RawClient(address)
        fast.send("GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
        let fastResponse = try fast.readResponse()
        #expect(fastResponse.text == "fast")
        #expect(!slow.hasInput, "the slow request is still running")
        fastAnswered.value = true

        #expect(try slow.readResponse().text == "slow")
        #expect(releasedByFast.value == true)
    }

    @Test func bindingABoundPortThrowsAddressInUse() throws {
        let (server, address) = try startServer()
        defer { server.stop() }
        guard case let .tcp(_, port) = address else { Issue.record("not tcp"); return }
        let second = HTTPServer(configuration: .init(address: .tcp(host: "127.0.0.1", port: port)),
                                handler: echoHandler)
        #expect(throws: HTTPServerError.addressInUse("127.0.0.1:\(port)")) { try second.start() }
    }

    @Test(arguments: [
        ListenAddress.tcp(host: "example.com", port: 80),
        .tcp(host: "999.1.1.1", port: 80),
        .tcp(host: "", port: 80),
        .tcp(host: "127.0.0.1:80", port: 80),
        .tcp(host: "[::1", port: 80),
        .tcp(host: "127.0.0.1", port: -1),
        .tcp(host: "127.0.0.1", port: 65536),
        .unix(path: ""),
        .unix(path: "/tmp/" + String(repeating: "s", count: 200)),
    ])
    func badAddressThrowsInvalidAddress(address: ListenAddress) {
        let server = HTTPServer(configuration: .init(address: address), handler: echoHandler)
        #expect(throws: HTTPServerError.invalidAddress(address.description)) { try server.start() }
    }

    @Test func localhostAndSecondStart() throws {
        let server = HTTPServer(configuration: .init(address: .tcp(host: "localhost", port: 0)), handler: echoHandler)
        defer { server.stop() }
        let address = try server.start()
        guard case let .tcp(host, _) = address else { Issue.record("not tcp"); return }
        #expect(host == "127.0.0.1")
        #expect(throws: HTTPServerError.alreadyStarted) { try server.start() }
        let client = try RawClient(address)
        client.send("GET /l HTTP/1.1\r\n\r\n")
        #expect(try client.readResponse().text == "/l")
    }

    @Test(.enabled(if: canBindIPv6Loopback()), arguments: ["::1", "[::1]"])
    func ipv6Literal(host: String) throws {
        let (server, address) = try startServer(configure: { $0.address = .tcp(host: host, port: 0) })
        defer { server.stop() }
        guard case let .tcp(boundHost, _) = address else { Issue.record("not tcp"); return }
        #expect(boundHost == "::1")
        let client = try RawClient(address)
        client.send("GET /six HTTP/1.1\r\n\r\n")
        #expect(try client.readResponse().text == "/six")
    }

    @Test func stopRefusesNewConnectionsAndClosesOpenOnes() throws {
        let (server, address) = try startServer()
        let idle = try RawClient(address)
        idle.send("GET /before HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try idle.readResponse().text == "/before")

        server.stop()
        #expect(RawClient.connect(address).1 == ECONNREFUSED)
        let (rest, eof) = idle.readToEnd()
        #expect(eof && rest.isEmpty, "the kept-alive connection was closed")
        #expect(server.activeConnectionCount == 0)
        server.stop()  // idempotent
    }

    @Test func isPeerGoneBecomesTrueAfterTheClientCloses() throws {
        let goneAtStart = Shared<Bool?>(nil)
        let goneAtEnd = Shared<Bool?>(nil)
        let (server, address) = try startServer { _, connection in
            goneAtStart.value = connection.isPeerGone()
            let noticed = waitUntil(seconds: 10) { connection.isPeerGone() }
            goneAtEnd.value = noticed
            return HTTPResponse(status: 200)
        }
        defer { server.stop() }
        let client = try RawClient(address)
        client.send("GET /profile?seconds=30 HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(waitUntil { goneAtStart.value != nil })
        #expect(goneAtStart.value == false)
        client.close()
        #expect(waitUntil(seconds: 15) { goneAtEnd.value != nil })
        #expect(goneAtEnd.value == true)
        #expect(!HTTPClientConnection().isPeerGone(), "a socketless connection is never gone")
    }

    @Test func unixSocketHasMode0600AndIsRemovedOnStop() throws {
        let path = uniqueSocketPath()
        let (server, address) = try startServer(configure: { $0.address = .unix(path: path) })
        defer { server.stop() }
        #expect(address == .unix(path: path))
        let mode = try #require(fileMode(path))
        #expect(mode & S_IFMT == S_IFSOCK)
        #expect(mode & 0o777 == 0o600)

        let client = try RawClient(address)
        client.send("GET /unix HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try client.readResponse().text == "/unix")

        let rival = HTTPServer(configuration: .init(address: .unix(path: path)), handler: echoHandler)
        #expect(throws: HTTPServerError.addressInUse(path)) { try rival.start() }
        #expect(fileMode(path) != nil, "a live socket is not removed")

        server.stop()
        #expect(fileMode(path) == nil)
    }

    @Test func staleUnixSocketIsReplacedButOtherFilesAreNot() throws {
        let path = uniqueSocketPath()
        // A socket file nobody listens on, as a crashed process leaves it.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(bound == 0)
        close(stale)

        let (server, listening) = try startServer(configure: { $0.address = .unix(path: path) })
        let client = try RawClient(listening)
        client.send("GET /fresh HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try client.readResponse().text == "/fresh")
        server.stop()

        let regular = open(path, O_CREAT | O_WRONLY, 0o644)
        #expect(regular >= 0)
        close(regular)
        defer { unlink(path) }
        let blocked = HTTPServer(configuration: .init(address: .unix(path: path)), handler: echoHandler)
        #expect(throws: HTTPServerError.addressInUse(path)) { try blocked.start() }
        #expect(fileMode(path).map { $0 & S_IFMT == S_IFREG } == true, "a regular file is left alone")
    }

    @Test func connectionsOverTheLimitGet503() throws {
        let (server, address) = try startServer(configure: { $0.maxConnections = 2 })
        defer { server.stop() }
        var held: [RawClient] = []
        for index in 0..<2 {
            let client = try RawClient(address)
            client.send("GET /held\(index) HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try client.readResponse().text == "/held\(index)")
            held.append(client)
        }
        let extra = try RawClient(address)
        extra.send("GET /extra HTTP/1.1\r\nHost: t\r\n\r\n")
        let (bytes, eof) = extra.readToEnd()
        #expect(eof)
        let response = RawResponse.parse(bytes[...], bodyless: false)?.0
        #expect(response?.status == 503)
        #expect(response?.reason == "Service Unavailable")
        #expect(response?.header("Content-Type") == "text/plain; charset=utf-8")

        held[0].close()
        #expect(waitUntil { server.activeConnectionCount < 2 })
        let later = try RawClient(address)
        later.send("GET /later HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try later.readResponse().text == "/later")
    }

    @Test func idleAndSlowClientsAreTimedOut() throws {
        let (server, address) = try startServer(configure: { $0.idleTimeoutSeconds = 1 })
        defer { server.stop() }
        let idle = try RawClient(address)
        let (idleBytes, idleEOF) = idle.readToEnd()
        #expect(idleEOF && idleBytes.isEmpty, "an idle connection is closed without a response")

        let partial = try RawClient(address)
        partial.send("GET /never-finished HTTP/1.1\r\nHost:")
        let (bytes, eof) = partial.readToEnd()
        #expect(eof)
        #expect(RawResponse.parse(bytes[...], bodyless: false)?.0.status == 408)
    }

    @Test func handlerHeadersAreSanitised() throws {
        let (server, address) = try startServer { _, _ in
            HTTPResponse(status: 404, headers: [("Content-Length", "999"), ("X-Evil", "a\r\nInjected: 1"),
                                                ("Bad Name", "x"), ("X-Good", "ok")],
                         body: Array("nope\n".utf8))
        }
        defer { server.stop() }
        let client = try RawClient(address)
        client.send("GET / HTTP/1.1\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 404)
        #expect(response.reason == "Not Found")
        #expect(response.header("Content-Length") == "5")
        #expect(response.header("X-Evil") == nil && response.header("Injected") == nil)
        #expect(response.header("X-Good") == "ok")
        #expect(response.headers.filter { $0.name.lowercased() == "content-length" }.count == 1)
    }

    @Test func threadsAreNamedAndSocketsCloseOnExec() throws {
        let inHandler = Shared<[String]>([])
        let (server, address) = try startServer { _, connection in
            let flags = fcntl(connection.descriptor, F_GETFD)
            inHandler.value = [readSmallFile("/proc/thread-self/comm") ?? "?",
                               flags >= 0 && flags & FD_CLOEXEC != 0 ? "cloexec" : "inherited"]
            return HTTPResponse(status: 200)
        }
        defer { server.stop() }
        // The accept thread names itself once it runs, which may be a moment after start().
        #expect(waitUntil { threadNames().contains("pprof-accept") })
        let client = try RawClient(address)
        client.send("GET / HTTP/1.1\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        #expect(inHandler.value == ["pprof-conn", "cloexec"])
    }

    @Test func aClientThatStopsReadingIsDropped() throws {
        let (server, address) = try startServer(configure: { $0.idleTimeoutSeconds = 1 }) { _, _ in
            HTTPResponse(status: 200, body: [UInt8](repeating: 0x61, count: 64 << 20))
        }
        defer { server.stop() }
        let client = try RawClient(address)
        client.send("GET /huge HTTP/1.1\r\n\r\n")
        #expect(waitUntil { server.activeConnectionCount == 1 })
        // Never read: the send stalls, the write deadline ends the connection.
        #expect(waitUntil(seconds: 30) { server.activeConnectionCount == 0 })
    }

    @Test func stopWakesALongHandler() throws {
        let started = Shared(false)
        let noticed = Shared<Bool?>(nil)
        let (server, address) = try startServer { _, connection in
            started.value = true
            noticed.value = waitUntil(seconds: 10) { connection.isPeerGone() }
            return HTTPResponse(status: 200)
        }
        let client = try RawClient(address)
        client.send("GET /debug/pprof/profile?seconds=30 HTTP/1.1\r\n\r\n")
        #expect(waitUntil { started.value })
        server.stop()
        #expect(waitUntil { noticed.value != nil })
        #expect(noticed.value == true, "the handler saw the stop through isPeerGone()")
        #expect(waitUntil { server.activeConnectionCount == 0 })
    }
}

private func threadNames() -> [String] {
    guard let dir = opendir("/proc/self/task") else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let tid = withUnsafeBytes(of: entry.pointee.d_name) {
            String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
        }
        if let name = readSmallFile("/proc/self/task/\(tid)/comm") { names.append(name) }
    }
    return names
}

private func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 256)
    let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return nil }
    return String(decoding: bytes[0..<n], as: UTF8.self).trimmingBlanks().split(separator: "\n").first.map(String.init)
}

// MARK: - Pure parsing tests

@Suite("HTTP parsing")
struct HTTPParsingTests {
    private func head(_ text: String) throws(HTTPParseError) -> HTTPRequestHead {
        var scanner = HTTPHeadScanner(maxRequestLineBytes: 8192, maxHeaderBytes: 1024, maxHeaderCount: 10)
        let bytes = Array(text.utf8)
        guard let range = try scanner.scan(bytes) else { throw .badRequest }
        return try HTTPRequestParser.parseHead(bytes[range])
    }

    @Test func keepAliveRules() throws {
        #expect(try head("GET / HTTP/1.1\r\n\r\n").keepAlive)
        #expect(try !head("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keepAlive)
        #expect(try !head("GET / HTTP/1.0\r\n\r\n").keepAlive)
        #expect(try head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keepAlive)
        #expect(try head("GET / HTTP/1.1\nHost: x\n\n").minorVersion == 1, "bare LF line ends")
        #expect(try head("\r\nGET /after-blank HTTP/1.1\r\n\r\n").path == "/after-blank")
    }

    @Test func targets() throws {
        let absolute = try head("GET http://example.com:8080/debug/pprof/?debug=1 HTTP/1.1\r\n\r\n")
        #expect(absolute.path == "/debug/pprof/")
        #expect(absolute.rawQuery == "debug=1")
        #expect(try head("GET http://example.com HTTP/1.1\r\n\r\n").path == "/")
        #expect(try head("OPTIONS * HTTP/1.1\r\n\r\n").path == "*")
        #expect(try head("GET /a+b%2Fc? HTTP/1.1\r\n\r\n").path == "/a+b/c")
        #expect(throws: HTTPParseError.badRequest) { try head("CONNECT host:443 HTTP/1.1\r\n\r\n") }
    }

    @Test func errors() {
        #expect(throws: HTTPParseError.notImplemented) {
            try head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        }
        #expect(throws: HTTPParseError.versionNotSupported) { try head("GET / HTTP/2.0\r\n\r\n") }
        #expect(throws: HTTPParseError.badRequest) { try head("GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n") }
        #expect(throws: HTTPParseError.badRequest) { try head("GET / HTTP/1.1\r\n : empty name\r\n\r\n") }
        #expect(throws: HTTPParseError.headerFieldsTooLarge) {
            try head("GET / HTTP/1.1\r\n" + String(repeating: "A: b\r\n", count: 11) + "\r\n")
        }
        #expect(throws: HTTPParseError.uriTooLong) {
            var scanner = HTTPHeadScanner(maxRequestLineBytes: 10, maxHeaderBytes: 1024, maxHeaderCount: 10)
            _ = try scanner.scan(Array("GET /0123456789".utf8))  // no line end yet
        }
    }

    @Test func scannerIsIncremental() throws {
        var scanner = HTTPHeadScanner(maxRequestLineBytes: 8192, maxHeaderBytes: 1024, maxHeaderCount: 10)
        var buffer: [UInt8] = []
        let text = Array("GET /x HTTP/1.1\r\nHost: y\r\n\r\nNEXT".utf8)
        var found: Range<Int>?
        for byte in text where found == nil {
            buffer.append(byte)
            found = try scanner.scan(buffer)
        }
        #expect(found == 0..<(text.count - 4))
    }

    @Test func queryValueFollowsGoFormValue() {
        let request = HTTPRequest(method: "GET", target: "/p?seconds=30&debug=&x=a+b%20c&x=second&bad=%zz&semi=1;2&flag")
        #expect(request.path == "/p")
        #expect(request.queryValue("seconds") == "30")
        #expect(request.queryValue("debug") == "")
        #expect(request.queryValue("x") == "a b c")
        #expect(request.queryValue("bad") == nil)
        #expect(request.queryValue("semi") == nil)
        #expect(request.queryValue("flag") == "")
        #expect(request.queryValue("missing") == nil)
        #expect(HTTPRequest(method: "GET", target: "/p?a%20b=1").queryValue("a b") == "1")
    }

    @Test func headerLookupIsCaseInsensitive() {
        let request = HTTPRequest(method: "GET", target: "/",
                                  headers: [("Accept-Encoding", "gzip"), ("accept-encoding", "br")])
        #expect(request.header("ACCEPT-ENCODING") == "gzip")
        #expect(request.header("Accept") == nil)
    }

    @Test func responseHeadEncoding() {
        let response = HTTPResponse(status: 204, headers: [("Connection", "close")], body: [1, 2])
        #expect(response.requestsClose)
        let head = String(decoding: response.encodedHead(keepAlive: false, requestMinorVersion: 1, date: nil), as: UTF8.self)
        #expect(head == "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        let weird = HTTPResponse(status: 42)
        let weirdHead = String(decoding: weird.encodedHead(keepAlive: true, requestMinorVersion: 1, date: "D"), as: UTF8.self)
        #expect(weirdHead == "HTTP/1.1 500 Internal Server Error\r\nDate: D\r\nContent-Length: 0\r\n\r\n")
        #expect(httpDate(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT")
    }
}
