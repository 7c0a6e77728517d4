import Testing
import Pprof

/// The public API as a user meets it: start, port, errors, stop.
@Suite("PprofServer public API")
struct PprofServerTests {
    @Test("port 0 binds a free port that then answers")
    func freePort() throws {
        let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
        defer { server.stop() }
        let port = try #require(server.port)
        #expect(port > 0)
        #expect(server.baseURL == "http://127.0.0.1:\(port)")
        #expect(try TestHTTP.request(port: port, target: "/debug/pprof/cmdline").status == 200)
    }

    @Test("boundAddress: nil until serving, the real TCP port (non-optional in the case), or the Unix path")
    func boundAddress() throws {
        let tcp = PprofServer(configuration: .init(host: "127.0.0.1", port: 0))
        #expect(tcp.boundAddress == nil)
        try tcp.start()
        defer { tcp.stop() }
        guard case let .tcp(host, port)? = tcp.boundAddress else {
            Issue.record("a TCP server bound \(String(describing: tcp.boundAddress))")
            return
        }
        #expect(host == "127.0.0.1" && port > 0 && port == tcp.port)
        #expect(tcp.boundAddress?.description == "127.0.0.1:\(port)")
        #expect(try TestHTTP.request(port: port, target: "/debug/pprof/cmdline").status == 200)
        // Port taken: the one-liner's server does not serve, and says so.
        let taken = try PprofServer.start(.init(host: "127.0.0.1", port: port))
        #expect(taken.boundAddress == nil)

        let path = "/tmp/pprof-bound-\(UInt32.random(in: 0...UInt32.max)).sock"
        let unix = try PprofServer.start(.init(unixSocketPath: path), required: true)
        defer { unix.stop() }
        #expect(unix.boundAddress == .unix(path: path))
        #expect(unix.boundAddress?.description == "unix:\(path)")
        #expect(unix.port == nil && unix.baseURL == nil)
    }

    @Test("a taken port: the one-liner logs and returns a server that does not serve; required throws addressInUse")
    func takenPort() throws {
        let first = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
        defer { first.stop() }
        let port = try #require(first.port)
        let second = try PprofServer.start(.init(host: "127.0.0.1", port: port))
        #expect(!second.isServing && second.port == nil)
        do {
            _ = try PprofServer.start(.init(host: "127.0.0.1", port: port), required: true)
            Issue.record("a taken port did not throw with required: true")
        } catch {
            #expect(error.kind == .addressInUse)
            #expect(error.description.contains("\(port)"))
        }
        #expect(throws: PprofServerError.self) { try PprofServer(configuration: .init(host: "127.0.0.1", port: port)).start() }
        #expect(try TestHTTP.request(port: port, target: "/debug/pprof/cmdline").status == 200)
    }

    @Test("a second start of the same server throws alreadyRunning")
    func secondStart() throws {
        let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
        defer { server.stop() }
        do {
            try server.start()
            Issue.record("second start did not throw")
        } catch {
            #expect(error.kind == .alreadyRunning)
        }
    }

    @Test("bad addresses throw invalidAddress", arguments: [
        ("not-an-address", 6060), ("999.1.1.1", 6060), ("127.0.0.1", 70000), ("127.0.0.1", -1),
    ])
    func badAddress(host: String, port: Int) {
        do {
            _ = try PprofServer.start(.init(host: host, port: port), required: true)
            Issue.record("\(host):\(port) was accepted")
        } catch {
            #expect(error.kind == .invalidAddress, "\(host):\(port) gave \(error)")
        }
    }

    @Test("listen addresses parse as HOST:PORT, with brackets for IPv6")
    func listenAddressParsing() throws {
        let v4 = try PprofServer.Configuration(listenAddress: "127.0.0.1:6061")
        #expect(v4.host == "127.0.0.1" && v4.port == 6061)
        let v6 = try PprofServer.Configuration(listenAddress: "[::1]:0")
        #expect(v6.host == "::1" && v6.port == 0)
        for bad in ["", "6060", "host:", ":6060", "127.0.0.1:port", "127.0.0.1:65536"] {
            #expect(throws: PprofServerError.self, "\(bad)") { try PprofServer.Configuration(listenAddress: bad) }
        }
    }

    @Test("the default configuration listens on loopback port 6060")
    func defaults() {
        let c = PprofServer.Configuration()
        #expect(c.host == "127.0.0.1" && c.port == 6060 && c.cpuSamplingRate == 100 && c.maxProfileSeconds == 300)
    }

    @Test("stop closes the port")
    func stopCloses() throws {
        let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
        let port = try #require(server.port)
        server.stop()
        #expect(throws: (any Error).self) { try TestHTTP.request(port: port, target: "/debug/pprof/cmdline") }
    }
}
