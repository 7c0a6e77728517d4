import Glibc
import Testing

@testable import Pprof

/// What an error answer may reveal (nothing internal), and what serving
/// profiles leaves on disk (nothing).
@Suite("Security: error bodies and the disk")
struct SecurityTests {
    /// Texts that would give away internals: paths, errno messages, Swift
    /// type and case names, runtime messages.
    static let forbidden: [String] = {
        var words = ["/home/", "/work/", "/tmp/", "/proc/", "/usr/", "/opt/", "/root/", "/var/", "/etc/", "/dev/",
                     "/lib", ".swift", ".c:", ".h:", ".so", "errno", "Errno", "Swift.", "Pprof.", "CPprof", "Glibc",
                     "Optional(", "Error(", "Error.", "Fatal error", "fatal", "assert", "0x0000", "pthread",
                     "startFailed", "zlib(", "system(", "HTTPParseError", "HTTPServerError", "CPUProfilerError",
                     "PprofServerError", "GzipError", "HTTPRequest", "HTTPResponse", "HTTPConnection",
                     "badRequest", "uriTooLong", "headerFieldsTooLarge", "payloadTooLarge", "notImplemented",
                     "versionNotSupported", "cpprof_", "swift_", "$s", "libunwind", "sigaction", "SIGPROF"]
        words += [String(reflecting: HTTPParseError.self), String(reflecting: CPUProfilerError.self),
                  String(reflecting: HTTPServerError.self), String(reflecting: GzipError.self)]
        // Every errno message this libc knows.
        for code in Int32(1)..<134 {
            if let text = strerror(code).map({ String(cString: $0) }), !text.hasPrefix("Unknown error") { words.append(text) }
        }
        return words
    }()

    /// The body leaks nothing and is a short line of printable ASCII.
    static func problems(in body: [UInt8], _ what: String) -> [String] {
        var found: [String] = []
        let text = String(decoding: body, as: UTF8.self)
        for word in forbidden where text.contains(word) {
            found.append("\(what): body \(text.debugDescription) contains \(word.debugDescription)")
        }
        if body.count > 120 || !body.allSatisfy({ ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x0A })
            || text.dropLast().contains("\n") || !(text.isEmpty || text.hasSuffix("\n")) {
            found.append("\(what): body \(text.debugDescription) is not one short printable line")
        }
        return found
    }

    @Test("no error answer, from the server or an endpoint, reveals paths, errno texts or type names")
    func errorBodiesRevealNothing() throws {
        // The detector itself catches what it is meant to catch.
        for leaky in ["open /tmp/x.sock: No such file or directory\n", "Pprof.HTTPParseError.badRequest\n",
                      "Fatal error: Unexpectedly found nil\n", "startFailed(16)\n", "errno 11\n"] {
            #expect(!Self.problems(in: Array(leaky.utf8), "self-check").isEmpty, "\(leaky.debugDescription) not caught")
        }
        var problems: [String] = []
        var seen: Set<Int> = []
        func inspect(_ r: StrictResponse, _ what: String) {
            guard r.status >= 400 else {
                problems.append("\(what): expected an error, got \(r.status)")
                return
            }
            seen.insert(r.status)
            problems += Self.problems(in: r.body, "\(what) -> \(r.status)")
            for (name, value) in r.headers where Self.forbidden.contains(where: { value.contains($0) }) {
                problems.append("\(what): header \(name): \(value)")
            }
        }

        // Endpoint errors, and the server's own, on the public server.
        let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0, maxProfileSeconds: 5))
        defer { server.stop() }
        let port = try #require(server.port)
        let targets = ["/debug/pprof/nope", "/debug/pprof/heap/", "/metrics", "/debug/pprof/profile?seconds=6",
                       "/debug/pprof/profile", "/debug/pprof/block?seconds=abc", "/debug/pprof/heap?seconds=-1",
                       "/debug/pprof/mutex?seconds=1&debug=1", "/debug/pprof/goroutine?seconds=99999999999999999999",
                       "/debug/pprof/%2e%2e/%2e%2e/etc/passwd", "/../../etc/passwd", "/debug/pprof/../../../proc/self/maps"]
        for target in targets {
            inspect(try TestHTTP.request(port: port, target: target), "GET \(target)")
        }
        for method in ["POST", "DELETE", "PUT", "PATCH", "TRACE", "CONNECT_", "get"] {
            inspect(try TestHTTP.request(port: port, method: method, target: "/debug/pprof/heap"), "\(method) /debug/pprof/heap")
        }
        let raw: [(String, [UInt8])] = [
            ("garbage", Array("GARBAGE\r\n\r\n".utf8)),
            ("bad escape", Array("GET /%zz HTTP/1.1\r\n\r\n".utf8)),
            ("NUL in a header", Array("GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n".utf8)),
            ("two lengths", Array("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx".utf8)),
            ("huge length", Array("POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n".utf8)),
            ("gzip coding", Array("POST /debug/pprof/symbol HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".utf8)),
            ("HTTP/2", Array("GET / HTTP/2.0\r\n\r\n".utf8)),
            ("long line", Array(("GET /" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\n\r\n").utf8)),
            ("big header", Array(("GET / HTTP/1.1\r\nX: " + String(repeating: "b", count: 17_000) + "\r\n\r\n").utf8)),
            ("many headers", Array(("GET / HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: 101) + "\r\n").utf8)),
            ("invalid UTF-8", [0x47, 0x45, 0x54, 0x20, 0x2F, 0xFF, 0xFE, 0x20] + Array("HTTP/1.1\r\nX: \u{1}\r\n\r\n".utf8)),
        ]
        for (what, bytes) in raw {
            let exchange = try TestHTTP.exchange(port: port, bytes: bytes)
            let responses = try StrictResponse.parseStream(exchange.bytes[...], bodyless: { _ in false })
            guard let r = responses.last else {
                problems.append("\(what): no answer")
                continue
            }
            inspect(r, what)
        }

        // 401 with a bearer token.
        let guarded = try PprofServer.start(.init(host: "127.0.0.1", port: 0, bearerToken: "t0ken"))
        defer { guarded.stop() }
        let unauthorized = try TestHTTP.request(port: try #require(guarded.port), target: "/debug/pprof/heap",
                                                 headers: ["Authorization: Bearer wrong"])
        inspect(unauthorized, "wrong token")
        #expect(!unauthorized.text.contains("t0ken") && !unauthorized.text.contains("wrong"))

        // 408 and 503 need the server's timeout and limit turned down: the
        // same handler the public server uses, on an HTTPServer configured so.
        let handler = PprofHandler(configuration: .init())
        let small = HTTPServer(configuration: HTTPServerConfiguration(address: .tcp(host: "127.0.0.1", port: 0),
                                                                      maxConnections: 1, idleTimeoutSeconds: 1),
                               handler: { request, connection in handler.handle(request, isCancelled: { connection.isPeerGone() }) })
        defer { small.stop() }
        guard case let .tcp(_, smallPort) = try small.start() else { throw TestHTTP.Failure(description: "not TCP") }
        // The one connection is busy (a 2 s delta profile): the next one is refused.
        let busy = try TestHTTP.connect(port: smallPort)
        _ = "GET /debug/pprof/block?seconds=2 HTTP/1.1\r\nHost: x\r\n\r\n".withCString { send(busy, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        #expect(waitUntil { small.activeConnectionCount == 1 })
        usleep(200_000)  // the request is read and with a worker
        let over = try TestHTTP.exchange(port: smallPort, bytes: Array("GET /debug/pprof/ HTTP/1.1\r\n\r\n".utf8))
        if let r = try StrictResponse.parseStream(over.bytes[...], bodyless: { _ in false }).last { inspect(r, "over the limit") }
        close(busy)
        #expect(waitUntil { small.activeConnectionCount == 0 })
        let held = try TestHTTP.connect(port: smallPort)
        _ = "GET /debug/pprof/cmdline HTTP/1.1\r\nHost: x".withCString { send(held, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        let timedOut = TestHTTP.readUntilClosed(held, timeoutSeconds: 10)
        close(held)
        if let r = try StrictResponse.parseStream(timedOut.bytes[...], bodyless: { _ in false }).last { inspect(r, "timed out") }

        // The same endpoints called directly (PprofHandler, for other routers).
        for (method, path, query) in [("GET", "/debug/pprof/x", ""), ("PUT", "/debug/pprof/", ""),
                                      ("GET", "/debug/pprof/block", "seconds=-5"), ("GET", "/debug/pprof/profile", "seconds=999")] {
            let r = handler.respondBlocking(to: .init(method: method, path: path, query: query))
            #expect(r.status >= 400, "\(method) \(path)?\(query)")
            problems += Self.problems(in: r.body, "handler \(method) \(path)?\(query)")
        }

        #expect(seen.isSuperset(of: [400, 401, 404, 405, 408, 413, 414, 431, 501, 503, 505]), "statuses seen: \(seen.sorted())")
        #expect(problems.isEmpty, "\(problems.prefix(10).joined(separator: "\n"))")
    }

    // MARK: - Nothing written to disk

    static let strace: String? = ["/usr/bin/strace", "/bin/strace"].first { access($0, X_OK) == 0 }

    /// System calls that create, change or remove files.
    static let fileSyscalls = ["open", "openat", "openat2", "creat", "mkdir", "mkdirat", "rename", "renameat",
                               "renameat2", "unlink", "unlinkat", "link", "linkat", "symlink", "symlinkat",
                               "truncate", "mknod", "mknodat"]

    @Test("serving every endpoint writes nothing to disk (strace of a child process)",
          .enabled(if: strace != nil, "strace is not installed"))
    func nothingWrittenToDisk() throws {
        let strace = try #require(Self.strace)
        let outcome = try ChildProcessTest.expectScenario(
            "diskScenario", scenario: "disk",
            wrapper: [strace, "-f", "-qq", "-e", "signal=none", "-e", "trace=" + Self.fileSyscalls.joined(separator: ",")],
            timeoutSeconds: 60, marker: "served")
        var opens = 0
        var writes: [String] = []
        for line in outcome.output.split(separator: "\n") {
            // "[pid 123] openat(AT_FDCWD, \"/path\", O_RDONLY|O_CLOEXEC) = 3"
            let call = line.hasPrefix("[pid ") ? line.drop { $0 != "]" }.dropFirst(2) : line[...]
            guard let paren = call.firstIndex(of: "("), Self.fileSyscalls.contains(String(call[..<paren])) else { continue }
            let name = call[..<paren]
            let quoted = call.split(separator: "\"", omittingEmptySubsequences: false)
            let path = quoted.count > 1 ? String(quoted[1]) : ""
            if path.hasPrefix("/proc/") || path.hasPrefix("/dev/") || path.hasPrefix("/sys/") { continue }
            if name.hasPrefix("open") {
                opens += 1
                let flags = quoted.count > 2 ? quoted[2] : ""
                if ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND", "O_TMPFILE"].contains(where: { flags.contains($0) }) {
                    writes.append(String(line))
                }
            } else {
                writes.append(String(line))
            }
        }
        #expect(opens > 0, "strace saw no open at all: the check proves nothing")
        #expect(writes.isEmpty, "\(writes.prefix(10).joined(separator: "\n"))")
    }

    /// Run by `nothingWrittenToDisk` in a child process under strace: every
    /// endpoint once, a CPU profile and a delta profile included.
    @Test(.enabled(if: ChildProcessTest.scenario == "disk"))
    func diskScenario() throws {
        let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
        defer { server.stop() }
        let port = try #require(server.port)
        let worker = FaultFlag()
        let burner = faultSpawn { _ = faultBurn(until: worker) }
        defer { worker.set(); if let burner { pthread_join(burner, nil) } }
        var statuses: [Int] = []
        for target in ["/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol?0x1000", "/debug/pprof/profile?seconds=1",
                       "/debug/pprof/heap", "/debug/pprof/heap?debug=1", "/debug/pprof/allocs", "/debug/pprof/goroutine",
                       "/debug/pprof/goroutine?debug=1", "/debug/pprof/goroutine?debug=2", "/debug/pprof/threadcreate",
                       "/debug/pprof/threadcreate?debug=1", "/debug/pprof/block", "/debug/pprof/mutex?debug=1",
                       "/debug/pprof/block?seconds=1", "/debug/pprof/nope", "/debug/pprof/heap?seconds=x"] {
            statuses.append(try TestHTTP.request(port: port, target: target).status)
        }
        statuses.append(try TestHTTP.request(port: port, method: "POST", target: "/debug/pprof/symbol", body: Array("0x1000".utf8)).status)
        #expect(statuses.filter { $0 == 200 }.count == 16, "\(statuses)")
        print("diskScenario: served \(statuses.count) requests")
    }
}
