import Glibc
import Testing

@testable import Pprof

/// Hostile clients the HTTP tests of HTTPServerTests do not cover: a client
/// that drips bytes to keep its deadline alive, clients that take every
/// connection slot and go quiet, a flood of pipelined requests.
@Suite("Faults: hostile HTTP clients")
struct FaultHTTPTests {
    private func startServer(maxConnections: Int = 32, idleTimeoutSeconds: Int = 1) throws -> (HTTPServer, Int) {
        let handler = PprofHandler(configuration: .init())
        let server = HTTPServer(
            configuration: HTTPServerConfiguration(address: .tcp(host: "127.0.0.1", port: 0), maxConnections: maxConnections,
                                                   idleTimeoutSeconds: idleTimeoutSeconds),
            handler: { request, connection in handler.handle(request, isCancelled: { connection.isPeerGone() }) })
        guard case let .tcp(_, port) = try server.start() else { throw TestHTTP.Failure(description: "not TCP") }
        return (server, port)
    }

    /// Sends `bytes` one at a time, `interval` apart, until the server closes;
    /// returns what it answered and how long that took.
    private func drip(port: Int, _ bytes: [UInt8], everyMilliseconds interval: Int) throws -> (StrictResponse?, Double) {
        let fd = try TestHTTP.connect(port: port)
        defer { close(fd) }
        let start = monotonicSeconds()
        var answer: [UInt8] = []
        var index = 0
        while monotonicSeconds() - start < 15 {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&entry, 1, Int32(interval)) > 0 {
                let rest = TestHTTP.readUntilClosed(fd, timeoutSeconds: 5)
                answer = rest.bytes
                break
            }
            var byte = bytes[index % bytes.count]
            if send(fd, &byte, 1, Int32(MSG_NOSIGNAL)) < 0 && errno != EINTR { break }
            index += 1
        }
        let elapsed = monotonicSeconds() - start
        return (try StrictResponse.parseStream(answer[...], bodyless: { _ in false }).last, elapsed)
    }

    @Test("a client dripping a request byte by byte gets 408 at the request deadline, not never")
    func dripFedHeadAndBodyTimeOut() throws {
        let (server, port) = try startServer(idleTimeoutSeconds: 1)
        defer { server.stop() }
        // The head never ends: 40 header bytes repeated.
        let (headAnswer, headSeconds) = try drip(port: port, Array("GET /debug/pprof/ HTTP/1.1\r\nX-Slow: aaaaaaa\r\n".utf8),
                                                 everyMilliseconds: 150)
        #expect(headAnswer?.status == 408)
        #expect(headSeconds < 4, "the deadline was extended by each byte: \(headSeconds) s")
        // The head is fast, the body drips.
        let fd = try TestHTTP.connect(port: port)
        defer { close(fd) }
        _ = "POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: 1000\r\n\r\n".withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        let (bodyAnswer, bodySeconds) = try drip(port: port, Array("0x1+".utf8), everyMilliseconds: 150)
        #expect(bodyAnswer?.status == 408 || bodyAnswer?.status == 400, "\(String(describing: bodyAnswer?.status))")
        #expect(bodySeconds < 4)
        #expect(waitUntil(seconds: 10) { server.activeConnectionCount == 0 })
    }

    @Test("clients that take every connection and go quiet give way to a newcomer, and are cut at the head deadline")
    func quietClientsCannotHoldTheServer() throws {
        let (server, port) = try startServer(maxConnections: 4, idleTimeoutSeconds: 1)
        defer { server.stop() }
        var quiet: [Int32] = []
        defer { quiet.forEach { close($0) } }
        for i in 0..<4 {
            let fd = try TestHTTP.connect(port: port)
            quiet.append(fd)
            if i % 2 == 0 { _ = "GET /debug".withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) } } // half a request
        }
        #expect(waitUntil(seconds: 5) { server.activeConnectionCount == 4 })
        // The newcomer is served: the connection idle the longest was closed to make room.
        let served = try TestHTTP.request(port: port, target: "/debug/pprof/cmdline")
        #expect(served.status == 200)
        let evicted = TestHTTP.readUntilClosed(quiet[0], timeoutSeconds: 5)
        #expect(evicted.closed && evicted.bytes.isEmpty)
        // The server closes the others itself (408 for the half request), without their
        // help: 1 s head deadline, then at most 2 s of lingering for the client to close.
        let halfRequest = TestHTTP.readUntilClosed(quiet[2], timeoutSeconds: 5)
        #expect(try StrictResponse.parseStream(halfRequest.bytes[...], bodyless: { _ in false }).last?.status == 408)
        #expect(waitUntil(seconds: 10) { server.activeConnectionCount == 0 })
    }

    @Test("a flood of pipelined requests is answered in order with the buffer bounded")
    func pipelinedFlood() throws {
        let (server, port) = try startServer(idleTimeoutSeconds: 5)
        defer { server.stop() }
        var bytes: [UInt8] = []
        let count = 1000
        for i in 0..<count {
            let target = i % 3 == 0 ? "/debug/pprof/nope\(i)" : (i % 3 == 1 ? "/debug/pprof/cmdline" : "/debug/pprof/symbol?\(i)")
            bytes += Array("GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        }
        bytes += Array("GET /debug/pprof/cmdline HTTP/1.1\r\nConnection: close\r\n\r\n".utf8)
        let exchange = try TestHTTP.exchange(port: port, bytes: bytes, halfClose: false, timeoutSeconds: 30)
        #expect(exchange.closed)
        let responses = try StrictResponse.parseStream(exchange.bytes[...], bodyless: { _ in false })
        #expect(responses.count == count + 1)
        let inOrder = responses.prefix(count).enumerated().allSatisfy { i, r in
            i % 3 == 0 ? r.status == 404 : r.status == 200
        }
        #expect(inOrder)
        #expect(responses.last?.header("Connection") == "close")
    }
}
