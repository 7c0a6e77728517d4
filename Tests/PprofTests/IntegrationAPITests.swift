import Foundation
import Logging
import PprofServiceLifecycle
import ServiceLifecycle
import Testing
@testable import Pprof

/// The ways an app wires swift-pprof in: a router (PprofHandler), a
/// ServiceGroup, the environment, a Unix socket, a bearer token, a Logger.
@Suite("Integration API")
struct IntegrationAPITests {
    @Test("PprofHandler answers like the built-in server, off the cooperative pool")
    func handlerAnswers() async throws {
        let handler = PprofHandler()
        let index = await handler.respond(to: .init(method: "GET", path: "/debug/pprof/"))
        #expect(index.status == 200)
        #expect(index.headers.contains { $0.name == "Content-Type" && $0.value == "text/html; charset=utf-8" })
        let unknown = await handler.respond(to: .init(method: "GET", path: "/debug/pprof/nope"))
        #expect(unknown.status == 404 && unknown.body == Array("Unknown profile\n".utf8))
        let delta = await handler.respond(to: .init(method: "GET", path: "/debug/pprof/block", query: "seconds=x"))
        #expect(delta.status == 400)
    }

    @Test("a bearer token is required when configured, and compared exactly")
    func bearerToken() throws {
        let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0, bearerToken: "s3cret"))
        defer { server.stop() }
        let port = try #require(server.port)
        let none = try TestHTTP.request(port: port, target: "/debug/pprof/cmdline")
        #expect(none.status == 401)
        #expect(none.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
        #expect(!none.text.contains("s3cret"))
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "Bearer S3CRET", "bearer"] {
            let r = try TestHTTP.request(port: port, target: "/debug/pprof/cmdline", headers: ["Authorization: \(wrong)"])
            #expect(r.status == 401, "\(wrong)")
        }
        let ok = try TestHTTP.request(port: port, target: "/debug/pprof/cmdline", headers: ["Authorization: Bearer s3cret"])
        #expect(ok.status == 200)
        #expect(BearerToken.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        #expect(!BearerToken.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        #expect(!BearerToken.constantTimeEquals(Array("abc".utf8), Array("abcd".utf8)))
    }

    @Test("configuration from the environment")
    func environment() throws {
        func config(_ env: [String: String]) throws(PprofServerError) -> PprofServer.Configuration? {
            try PprofServer.Configuration.fromEnvironment(defaults: .init(), lookup: { env[$0] })
        }
        #expect(try config([:]) == PprofServer.Configuration())
        #expect(try config(["PPROF_ENABLED": "false"]) == nil)
        #expect(try config(["PPROF_ENABLED": "0"]) == nil)
        let c = try #require(try config(["PPROF_LISTEN": "[::1]:7070", "PPROF_BEARER_TOKEN": "t", "PPROF_MAX_PROFILE_SECONDS": "60", "PPROF_CPU_SAMPLING_RATE": "250"]))
        #expect(c.host == "::1" && c.port == 7070 && c.bearerToken == "t" && c.maxProfileSeconds == 60 && c.cpuSamplingRate == 250)
        let unix = try #require(try config(["PPROF_LISTEN": "unix:/tmp/p.sock"]))
        #expect(unix.unixSocketPath == "/tmp/p.sock")
        for (name, value) in [("PPROF_ENABLED", "maybe"), ("PPROF_LISTEN", "nowhere"), ("PPROF_MAX_PROFILE_SECONDS", "-1"), ("PPROF_CPU_SAMPLING_RATE", "0")] {
            do {
                _ = try config([name: value])
                Issue.record("\(name)=\(value) accepted")
            } catch {
                #expect(error.kind == .invalidConfiguration || error.kind == .invalidAddress)
                #expect(error.description.contains(name) || error.description.contains(value))
            }
        }
    }

    @Test("a Unix-domain socket listener, mode 0600")
    func unixSocket() throws {
        let path = "/tmp/pprof-test-\(getpid())-\(UInt16.random(in: 0...UInt16.max)).sock"
        let server = try PprofServer.start(.init(unixSocketPath: path))
        defer { server.stop() }
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(server.port == nil)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(rc == 0)
        let request = Array("GET /debug/pprof/cmdline HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        let response = try TestHTTP.parse(TestHTTP.readUntilClosed(fd, timeoutSeconds: 120).bytes)
        #expect(response.status == 200)
    }

    @Test("as a Service, the server starts with its ServiceGroup and stops on graceful shutdown")
    func serviceLifecycle() async throws {
        let server = PprofServer(configuration: .init(host: "127.0.0.1", port: 0))
        let group = ServiceGroup(configuration: .init(services: [server], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        var port: Int?
        for _ in 0..<200 where port == nil {
            try await Task.sleep(for: .milliseconds(10))
            port = server.port
        }
        let bound = try #require(port)
        #expect(try TestHTTP.request(port: bound, target: "/debug/pprof/cmdline").status == 200)
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(throws: (any Error).self) { try TestHTTP.request(port: bound, target: "/debug/pprof/cmdline") }
    }

    @Test("the logger gets one info line with the bound address")
    func logging() throws {
        let recorder = RecordingLogHandler.Storage()
        let logger = Logger(label: "pprof-test") { _ in RecordingLogHandler(storage: recorder) }
        let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0), logger: logger)
        defer { server.stop() }
        _ = try TestHTTP.request(port: server.port!, target: "/debug/pprof/cmdline")
        let lines = recorder.lines
        #expect(lines.count == 1)
        #expect(lines.first?.contains("127.0.0.1:\(server.port!)") == true)
    }
}

struct RecordingLogHandler: LogHandler {
    final class Storage: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: [String] = []
        func append(_ s: String) { lock.withLock { stored.append(s) } }
        var lines: [String] { lock.withLock { stored } }
    }
    let storage: Storage
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        storage.append("\(event.level) \(event.message) \(event.metadata ?? [:])")
    }
}

// Starts CPU sampling: serialized with the other tests that do.
extension ProcessWideStateTests {
    @Suite("PprofHandler cancellation")
    struct PprofHandlerCancellationTests {
        @Test("cancelling the calling task ends a CPU profile early")
        func handlerCancellation() async throws {
            let handler = PprofHandler()
            let start = ContinuousClock.now
            let task = Task { await handler.respond(to: .init(method: "GET", path: "/debug/pprof/profile", query: "seconds=60")) }
            try await Task.sleep(for: .milliseconds(300))
            task.cancel()
            let response = await task.value
            #expect(response.status == 200)
            #expect(ContinuousClock.now - start < .seconds(30))
        }
    }
}
