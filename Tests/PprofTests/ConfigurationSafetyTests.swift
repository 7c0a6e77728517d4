import Glibc
import Testing

@testable import Pprof

/// Configuration that must fail closed, and a one-line start that must not
/// take the app down (issue 11, items 5 and 8).
@Suite("Configuration safety")
struct ConfigurationSafetyTests {
    private func environment(_ values: [String: String]) -> (String) -> String? {
        { values[$0] }
    }

    @Test("an empty or blank bearer token is a configuration error, never 'no authentication'")
    func emptyTokenFailsClosed() throws {
        for blank in ["", "  ", "\t"] {
            #expect(throws: PprofServerError.self) {
                try PprofServer.Configuration.fromEnvironment(defaults: .init(), lookup: environment(["PPROF_BEARER_TOKEN": blank]))
            }
            let fromEnvironment = PprofServer(configuration: .init(host: "127.0.0.1", port: 0), logger: nil,
                                              environment: environment(["PPROF_BEARER_TOKEN": blank]))
            #expect(throws: PprofServerError.self) { try fromEnvironment.start() }
            #expect(!fromEnvironment.isServing)
            let inCode = try PprofServer.start(.init(host: "127.0.0.1", port: 0, bearerToken: blank))
            #expect(!inCode.isServing, "a blank token in code must not serve unauthenticated")
            do {
                _ = try PprofServer.start(.init(host: "127.0.0.1", port: 0, bearerToken: blank), required: true)
                Issue.record("blank token accepted")
            } catch {
                #expect(error.kind == .invalidConfiguration)
            }
        }
    }

    @Test("start() honours PPROF_* for what code left at defaults; code wins; readsEnvironment opts out")
    func environmentPrecedence() throws {
        let variables = environment(["PPROF_LISTEN": "127.0.0.1:0", "PPROF_MAX_PROFILE_SECONDS": "42",
                                     "PPROF_BEARER_TOKEN": "s3cret"])
        let fromDefaults = PprofServer(configuration: .init(), logger: nil, environment: variables)
        try fromDefaults.start()
        defer { fromDefaults.stop() }
        let port = try #require(fromDefaults.port)
        #expect(port != 6060, "PPROF_LISTEN chose port 0")
        #expect(fromDefaults.configuration.maxProfileSeconds == 42)
        #expect(try TestHTTP.request(port: port, target: "/debug/pprof/cmdline").status == 401)
        #expect(try TestHTTP.request(port: port, target: "/debug/pprof/cmdline",
                                          headers: ["Authorization: Bearer s3cret"]).status == 200)

        let codeWins = PprofServer(configuration: .init(port: 0, maxProfileSeconds: 7), logger: nil, environment: variables)
        #expect(codeWins.configuration.maxProfileSeconds == 7)
        #expect(codeWins.configuration.port == 0)
        #expect(codeWins.configuration.bearerToken == "s3cret")

        var ignoring = PprofServer.Configuration(port: 0)
        ignoring.readsEnvironment = false
        let optedOut = PprofServer(configuration: ignoring, logger: nil, environment: variables)
        #expect(optedOut.configuration.maxProfileSeconds == 300 && optedOut.configuration.bearerToken == nil)

        let disabled = PprofServer(configuration: .init(port: 0), logger: nil, environment: environment(["PPROF_ENABLED": "0"]))
        try disabled.start()
        #expect(!disabled.isServing)
        let invalid = PprofServer(configuration: .init(port: 0), logger: nil,
                                  environment: environment(["PPROF_MAX_PROFILE_SECONDS": "soon"]))
        #expect(throws: PprofServerError.self) { try invalid.start() }
    }

    @Test("a loopback server refuses requests naming another Host (DNS rebinding); allowedHosts lets names in")
    func hostCheck() throws {
        var configuration = PprofServer.Configuration(host: "127.0.0.1", port: 0)
        configuration.readsEnvironment = false
        let server = try PprofServer.start(configuration)
        defer { server.stop() }
        let port = try #require(server.port)
        func status(_ host: String?) throws -> Int {
            var head = "GET /debug/pprof/cmdline HTTP/1.1\r\nConnection: close\r\n"
            if let host { head += "Host: \(host)\r\n" }
            return try TestHTTP.parse(TestHTTP.exchange(port: port, bytes: Array((head + "\r\n").utf8), halfClose: false).bytes).status
        }
        for allowed in ["127.0.0.1:\(port)", "localhost", "LOCALHOST:\(port)", "app.localhost", "[::1]:\(port)", "127.1.2.3", nil] {
            #expect(try status(allowed) == 200, "\(allowed ?? "no Host")")
        }
        for refused in ["evil.example", "evil.example:\(port)", "127.0.0.1.evil.example", "localhost.evil", "10.0.0.1"] {
            #expect(try status(refused) == 403, "\(refused)")
        }

        configuration.allowedHosts = ["pprof.internal"]
        let allowing = try PprofServer.start(configuration)
        defer { allowing.stop() }
        let allowingPort = try #require(allowing.port)
        let viaName = try TestHTTP.request(port: allowingPort, host: "127.0.0.1", target: "/debug/pprof/cmdline")
        #expect(viaName.status == 200)
        let head = "GET /debug/pprof/cmdline HTTP/1.1\r\nHost: PPROF.internal:80\r\nConnection: close\r\n\r\n"
        #expect(try TestHTTP.parse(TestHTTP.exchange(port: allowingPort, bytes: Array(head.utf8), halfClose: false).bytes).status == 200)
    }

    @Test("without a Logger, a non-loopback bind and a failed start still warn on standard error")
    func warningsReachStandardError() throws {
        let outcome = try ChildProcessTest.run(filter: "warningScenario", scenario: "stderr-warnings", timeoutSeconds: 60)
        #expect(outcome.exitStatus == 0, "\(outcome.output.suffix(2000))")
        #expect(outcome.output.contains("warning: pprof server listens on a non-loopback address"), "\(outcome.output.suffix(2000))")
        #expect(outcome.output.contains("warning: pprof server could not start: address already in use"), "\(outcome.output.suffix(2000))")
    }

    /// Run by `warningsReachStandardError` in a child process.
    @Test(.enabled(if: ChildProcessTest.scenario == "stderr-warnings"))
    func warningScenario() throws {
        let open = try PprofServer.start(.init(host: "0.0.0.0", port: 0))
        defer { open.stop() }
        let port = try #require(open.port)
        let taken = try PprofServer.start(.init(host: "0.0.0.0", port: port))
        #expect(!taken.isServing)
    }
}
