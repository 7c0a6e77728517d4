import Foundation
import Testing
@testable import Pprof

/// Status codes, headers and error bodies of every endpoint, over real HTTP,
/// against what Go's net/http/pprof answers (compat spec sections 1.2-1.9).
@Suite("Endpoints over HTTP")
struct EndpointHTTPTests {
    let server: PprofServer
    var port: Int { server.port! }

    init() throws {
        server = try PprofServer.start(.init(host: "127.0.0.1", port: 0, maxProfileSeconds: 60))
    }

    func get(_ target: String, method: String = "GET", body: [UInt8] = []) throws -> StrictResponse {
        try TestHTTP.request(port: port, method: method, target: target, body: body)
    }

    @Test("/debug/pprof redirects to /debug/pprof/")
    func redirect() throws {
        defer { server.stop() }
        let r = try get("/debug/pprof")
        #expect(r.status == 301)
        #expect(r.header("Location") == "/debug/pprof/")
    }

    @Test("the index lists every served profile with links, sorted")
    func index() throws {
        defer { server.stop() }
        let r = try get("/debug/pprof/")
        #expect(r.status == 200)
        #expect(r.header("Content-Type") == "text/html; charset=utf-8")
        #expect(r.header("X-Content-Type-Options") == "nosniff")
        let names = ["allocs", "block", "cmdline", "goroutine", "heap", "mutex", "profile", "symbol", "threadcreate"]
        let served = names.filter { r.text.contains("<a href='\($0)?debug=1'>\($0)</a>") }
        #expect(served.contains("profile") && served.contains("cmdline") && served.contains("symbol"))
        let positions = served.compactMap { r.text.range(of: "'\($0)?debug=1'")?.lowerBound }
        #expect(positions == positions.sorted(), "entries are sorted by name")
        #expect(r.text.contains("<a href=\"goroutine?debug=2\">full goroutine stack dump</a>"))
    }

    @Test("an unknown profile is 404 'Unknown profile' with Go's error headers")
    func unknownProfile() throws {
        defer { server.stop() }
        for target in ["/debug/pprof/nonexistent", "/debug/pprof/profile/extra", "/debug/pprof/block/"] {
            let r = try get(target)
            #expect(r.status == 404, "\(target)")
            #expect(r.text == "Unknown profile\n", "\(target)")
            #expect(r.header("X-Go-Pprof") == "1")
            #expect(r.header("Content-Type") == "text/plain; charset=utf-8")
        }
        let outside = try get("/metrics")
        #expect(outside.status == 404 && outside.text == "404 page not found\n")
    }

    @Test("methods other than GET and HEAD get 405, except POST to /symbol")
    func methods() throws {
        defer { server.stop() }
        let post = try get("/debug/pprof/profile", method: "POST")
        #expect(post.status == 405)
        #expect(post.header("Allow") == "GET, HEAD")
        let delete = try get("/debug/pprof/symbol", method: "DELETE")
        #expect(delete.status == 405)
        let head = try get("/debug/pprof/cmdline", method: "HEAD")
        #expect(head.status == 200 && head.body.isEmpty)
        #expect(Int(head.header("Content-Length") ?? "") ?? 0 > 0)
    }

    @Test("/cmdline is the process's arguments joined by NUL")
    func cmdline() throws {
        defer { server.stop() }
        let r = try get("/debug/pprof/cmdline")
        #expect(r.status == 200)
        #expect(r.header("Content-Type") == "text/plain; charset=utf-8")
        #expect(r.text.split(separator: "\0", omittingEmptySubsequences: false).map(String.init) == CommandLine.arguments)
    }

    @Test("/symbol resolves addresses from the query (GET) and the body (POST)")
    func symbol() throws {
        defer { server.stop() }
        let getpidAddress = UInt(bitPattern: dlsym(UnsafeMutableRawPointer(bitPattern: 0), "getpid"))
        let hex = "0x" + String(getpidAddress, radix: 16)
        let empty = try get("/debug/pprof/symbol")
        #expect(empty.status == 200 && empty.text == "num_symbols: 1\n")
        let viaGet = try get("/debug/pprof/symbol?\(hex)+0+junk")
        #expect(viaGet.text == "num_symbols: 1\n\(hex) getpid\n")
        let viaPost = try get("/debug/pprof/symbol", method: "POST", body: Array("\(hex)+\(hex)".utf8))
        #expect(viaPost.text == "num_symbols: 1\n\(hex) getpid\n\(hex) getpid\n")
    }

    @Test("CPU profile parameters: over the maximum is a clear 400")
    func cpuParameters() throws {
        defer { server.stop() }
        let r = try get("/debug/pprof/profile?seconds=61")
        #expect(r.status == 400)
        #expect(r.text.contains("exceeds"))
        #expect(r.header("X-Go-Pprof") == "1")
    }

    @Test("delta parameters give Go's errors, in Go's order")
    func deltaErrors() throws {
        defer { server.stop() }
        let cases: [(String, Int, String)] = [
            ("/debug/pprof/block?seconds=0", 400, "invalid value for \"seconds\" - must be a positive integer\n"),
            ("/debug/pprof/block?seconds=abc", 400, "invalid value for \"seconds\" - must be a positive integer\n"),
            ("/debug/pprof/block?seconds=-3", 400, "invalid value for \"seconds\" - must be a positive integer\n"),
            ("/debug/pprof/mutex?seconds=1&debug=1", 400, "seconds and debug params are incompatible\n"),
        ]
        for (target, status, body) in cases {
            let r = try get(target)
            #expect(r.status == status, "\(target)")
            #expect(r.text == body, "\(target)")
        }
        let delta = try get("/debug/pprof/block?seconds=1")
        #expect(delta.status == 200)
        #expect(delta.header("Content-Disposition") == "attachment; filename=\"block-delta\"")
        let p = try DecodedProfile(gzipped: delta.body)
        #expect(p.sampleTypes.map { p.string($0.type) } == ["contentions", "delay"])
        #expect(p.durationNanos >= 900_000_000)
    }

    @Test("heap and allocs always answer in Go's shape, with or without the HeapProfiling trait")
    func heapShape() throws {
        defer { server.stop() }
        for name in ["heap", "allocs"] {
            let r = try get("/debug/pprof/\(name)")
            #expect(r.status == 200)
            let p = try DecodedProfile(gzipped: r.body)
            #expect(p.sampleTypes.map { p.string($0.type) } == ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"])
            #expect(p.string(p.periodType.type) == "space" && p.string(p.periodType.unit) == "bytes")
            if !PprofServer.isHeapProfilingAvailable {
                #expect(p.samples.isEmpty)
                #expect(p.comments.contains { p.string($0).contains("unavailable") })
            }
        }
    }

    @Test("block and mutex are served empty in Go's shape and as text")
    func contentionProfiles() throws {
        defer { server.stop() }
        let r = try get("/debug/pprof/mutex")
        #expect(r.status == 200 && r.header("Content-Type") == "application/octet-stream")
        #expect(r.header("Content-Disposition") == "attachment; filename=\"mutex\"")
        let p = try DecodedProfile(gzipped: r.body)
        #expect(p.samples.isEmpty && p.string(p.periodType.type) == "contentions")
        let text = try get("/debug/pprof/mutex?debug=1")
        #expect(text.header("Content-Type") == "text/plain; charset=utf-8")
        #expect(text.text.hasPrefix("--- mutex:\n"))
    }
}
