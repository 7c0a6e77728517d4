import Pprof
import XCTVapor
@testable import VaporApp

/// The pprof endpoints answer through the app's own router.
final class PprofRoutesTests: XCTestCase {
    private func withApp(_ test: (Application) async throws -> Void) async throws {
        let app = try await Application.make(.testing)
        do {
            try configure(app, pprof: .router(PprofServer.Configuration()))
            try await test(app)
        } catch {
            try await app.asyncShutdown()
            throw error
        }
        try await app.asyncShutdown()
    }

    func testCmdline() async throws {
        try await withApp { app in
            try await app.test(.GET, "/debug/pprof/cmdline") { response async throws in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(response.headers.first(name: .contentType), "text/plain; charset=utf-8")
                XCTAssertFalse(response.body.readableBytesView.isEmpty)
            }
        }
    }

    func testHeapText() async throws {
        try await withApp { app in
            try await app.test(.GET, "/debug/pprof/heap", beforeRequest: { $0.url.query = "debug=1" }) { response async throws in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(response.headers.first(name: .contentType), "text/plain; charset=utf-8")
                XCTAssertTrue(response.body.string.hasPrefix("heap profile: "), response.body.string)
            }
        }
    }

    func testGoroutineProfile() async throws {
        try await withApp { app in
            try await app.test(.GET, "/debug/pprof/goroutine") { response async throws in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(response.headers.first(name: .contentType), "application/octet-stream")
                XCTAssertEqual(Array(response.body.readableBytesView.prefix(2)), [0x1f, 0x8b], "a gzipped profile")
            }
        }
    }

    func testHeadAnswersLikeGet() async throws {
        try await withApp { app in
            try await app.test(.HEAD, "/debug/pprof/cmdline") { response async throws in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(response.headers.first(name: .contentType), "text/plain; charset=utf-8")
            }
        }
    }

    func testSymbolByPost() async throws {
        try await withApp { app in
            try await app.test(.POST, "/debug/pprof/symbol", body: ByteBuffer(string: "0x1")) { response async throws in
                XCTAssertEqual(response.status, .ok)
                XCTAssertTrue(response.body.string.hasPrefix("num_symbols: 1\n"), response.body.string)
            }
        }
    }

    func testUnknownProfile() async throws {
        try await withApp { app in
            try await app.test(.GET, "/debug/pprof/nonexistent") { response async throws in
                XCTAssertEqual(response.status, .notFound)
                XCTAssertEqual(response.body.string, "Unknown profile\n")
            }
        }
    }

    func testOwnRoute() async throws {
        try await withApp { app in
            try await app.test(.GET, "/primes/100") { response async throws in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(try response.content.decode(Greeting.self).count, 25)
            }
        }
    }
}
