import Glibc
import Synchronization
import Testing

@testable import Pprof

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
        let seen = Locked<[String]>([])
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
        let parsed = StrictResponse.first(bytes[...], bodyless: true)
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
        #expect(StrictResponse.first(bytes[...], bodyless: false)?.0.text == "/old")

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
        let response = StrictResponse.first(bytes[...], bodyless: false)?.0
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
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
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
        #expect(StrictResponse.first(bytes[...], bodyless: false)?.0.status == 413)

        let fits = try RawClient(address)
        fits.send("POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\n" + String(repeating: "y", count: 16))
        #expect(try fits.readResponse().text == String(repeating: "y", count: 16))
    }

    @Test func slowHandlerDoesNotBlockAnotherRequest() throws {
        let slowStarted = Locked(false)
        let fastAnswered = Locked(false)
        let releasedByFast = Locked<Bool?>(nil)
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
        let goneAtStart = Locked<Bool?>(nil)
        let goneAtEnd = Locked<Bool?>(nil)
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

    @Test func connectionsOverTheLimitGet503OnlyWhenAllAreBusy() throws {
        let release = Locked(false)
        let running = Locked(0)
        let (server, address) = try startServer(configure: { $0.maxConnections = 2 }) { request, _ in
            if request.path.hasPrefix("/busy") {
                running.value += 1
                _ = waitUntil(seconds: 20) { release.value }
            }
            return HTTPResponse(status: 200, body: Array(request.path.utf8))
        }
        defer { server.stop() }
        // Idle keep-alive connections make room: the one idle the longest is closed.
        var idle: [RawClient] = []
        for index in 0..<2 {
            let client = try RawClient(address)
            client.send("GET /idle\(index) HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try client.readResponse().text == "/idle\(index)")
            idle.append(client)
        }
        let newcomer = try RawClient(address)
        newcomer.send("GET /new HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try newcomer.readResponse().text == "/new")
        let (evictedBytes, evictedEOF) = idle[0].readToEnd()
        #expect(evictedEOF && evictedBytes.isEmpty)
        newcomer.close()
        idle[1].close()
        #expect(waitUntil { server.activeConnectionCount == 0 })

        // Every connection has a request in progress: the newcomer gets 503.
        var busy: [RawClient] = []
        for index in 0..<2 {
            let client = try RawClient(address)
            client.send("GET /busy\(index) HTTP/1.1\r\nHost: t\r\n\r\n")
            busy.append(client)
        }
        #expect(waitUntil { running.value == 2 })
        let extra = try RawClient(address)
        extra.send("GET /extra HTTP/1.1\r\nHost: t\r\n\r\n")
        let (bytes, eof) = extra.readToEnd()
        #expect(eof)
        let response = StrictResponse.first(bytes[...], bodyless: false)?.0
        #expect(response?.status == 503)
        #expect(response?.reason == "Service Unavailable")
        #expect(response?.header("Content-Type") == "text/plain; charset=utf-8")
        #expect(response?.header("Retry-After") == "1")

        release.value = true
        #expect(try busy[0].readResponse().text == "/busy0")
        #expect(try busy[1].readResponse().text == "/busy1")
    }

    @Test func chunkedRequestBodiesAreDecoded() throws {
        let (server, address) = try startServer(configure: { $0.maxRequestBodyBytes = 64 }) { request, _ in
            HTTPResponse(status: 200, body: request.body)
        }
        defer { server.stop() }
        let client = try RawClient(address)
        // Sizes in hex with an extension, a trailer field, sent in pieces.
        client.send("POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\n0x123\r\n")
        usleep(50_000)
        client.send("9\r\n+0x456789\r\n0\r\nX-Trailer: 1\r\n\r\n")
        #expect(try client.readResponse().text == "0x123+0x456789")
        // The connection stays usable.
        client.send("POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        #expect(try client.readResponse().body.isEmpty)

        for (request, status) in [
            ("POST /s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n", 413),   // 65 > 64
            ("POST /s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
            ("POST /s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 400),
        ] {
            let bad = try RawClient(address)
            bad.send(request)
            #expect(try bad.readResponse().status == status, "\(request.debugDescription)")
        }
    }

    @Test func notHTTPIsRefusedAtOnce() throws {
        let (server, address) = try startServer(configure: { $0.idleTimeoutSeconds = 30; $0.headTimeoutSeconds = 30 })
        defer { server.stop() }
        for request in [[0x16, 0x03, 0x01, 0x02, 0x00, 0x01], Array("GET /\r\n".utf8), Array("\u{1}\u{2}binary".utf8)] as [[UInt8]] {
            let client = try RawClient(address)
            client.send(request)
            // The client's receive timeout (10 s) is shorter than the server's deadlines (30 s):
            // an answer and EOF here were not waiting for a deadline.
            let (bytes, eof) = client.readToEnd()
            #expect(eof, "\(request)")
            #expect(StrictResponse.first(bytes[...], bodyless: false)?.0.status == 400, "\(request)")
        }
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
        #expect(StrictResponse.first(bytes[...], bodyless: false)?.0.status == 408)
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
        let inHandler = Locked<[String]>([])
        let (server, address) = try startServer { _, connection in
            let flags = fcntl(connection.descriptor, F_GETFD)
            inHandler.value = [readSmallFile("/proc/thread-self/comm") ?? "?",
                               flags >= 0 && flags & FD_CLOEXEC != 0 ? "cloexec" : "inherited"]
            return HTTPResponse(status: 200)
        }
        defer { server.stop() }
        // The event-loop thread names itself once it runs, which may be a moment after start().
        #expect(waitUntil { threadNames().contains("pprof-http") })
        let client = try RawClient(address)
        client.send("GET / HTTP/1.1\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        #expect(inHandler.value == ["pprof-worker", "cloexec"])
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
        let started = Locked(false)
        let noticed = Locked<Bool?>(nil)
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

    @Test func errors() throws {
        #expect(try head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").chunked)
        #expect(throws: HTTPParseError.notImplemented) {
            try head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
        }
        #expect(throws: HTTPParseError.badRequest, "both framings: a smuggling attempt") {
            try head("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
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
