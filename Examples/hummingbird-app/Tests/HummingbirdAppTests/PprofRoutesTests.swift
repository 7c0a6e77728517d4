import Hummingbird
import HummingbirdTesting
import Pprof
import Testing
@testable import HummingbirdApp

/// The pprof endpoints answer through the app's own router.
@Suite struct PprofRoutesTests {
    func makeApp() -> some ApplicationProtocol {
        buildApplication(pprof: .router(PprofServer.Configuration()))
    }

    @Test func cmdline() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/debug/pprof/cmdline", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/plain; charset=utf-8")
                #expect(response.body.readableBytes > 0)
            }
        }
    }

    @Test func heapText() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/debug/pprof/heap?debug=1", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/plain; charset=utf-8")
                #expect(String(buffer: response.body).hasPrefix("heap profile: "))
            }
        }
    }

    @Test func goroutineProfile() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/debug/pprof/goroutine", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/octet-stream")
                #expect(Array(response.body.readableBytesView.prefix(2)) == [0x1f, 0x8b], "a gzipped profile")
            }
        }
    }

    @Test func headHasNoBody() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/debug/pprof/cmdline", method: .head) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/plain; charset=utf-8")
                #expect(response.body.readableBytes == 0)
            }
        }
    }

    @Test func indexAndRedirect() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/debug/pprof/", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/html; charset=utf-8")
            }
            try await client.execute(uri: "/debug/pprof", method: .get) { response in
                #expect(response.status == .movedPermanently)
                #expect(response.headers[.location] == "/debug/pprof/")
            }
        }
    }

    @Test func symbolByPost() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/debug/pprof/symbol", method: .post, body: ByteBuffer(string: "0x1")) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).hasPrefix("num_symbols: 1\n"))
            }
        }
    }

    @Test func unknownProfile() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/debug/pprof/nonexistent", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(String(buffer: response.body) == "Unknown profile\n")
            }
        }
    }

    @Test func ownRoute() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/primes/100", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("\"count\":25"))
            }
        }
    }
}
