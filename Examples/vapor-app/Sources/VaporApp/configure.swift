import Pprof
import Vapor

/// Where the app serves the pprof endpoints.
enum PprofMode: Sendable {
    /// On the app's own router and port, through ``PprofHandler``.
    case router(PprofServer.Configuration)
    /// On a separate ``PprofServer`` (loopback by default), started and
    /// stopped with the app.
    case server(PprofServer.Configuration)
    /// Not at all (`PPROF_ENABLED=0`).
    case off

    /// `PPROF_*` environment variables (see `PprofServer.Configuration.fromEnvironment`):
    /// with `PPROF_LISTEN` set, a separate server on that address; otherwise the router.
    static func fromEnvironment() throws -> PprofMode {
        guard let configuration = try PprofServer.Configuration.fromEnvironment() else { return .off }
        if let listen = Environment.get("PPROF_LISTEN"), !listen.isEmpty { return .server(configuration) }
        return .router(configuration)
    }
}

struct Greeting: Content {
    var message: String
    var primesBelow: Int
    var count: Int
}

/// The app's own routes, plus pprof.
func configure(_ app: Application, pprof: PprofMode) throws {
    app.get { _ in "Hello from vapor-app. Try /primes/200000 and /debug/pprof/\n" }

    // Some CPU work to find in a profile.
    app.get("primes", ":limit") { request -> Greeting in
        let limit = min(request.parameters.get("limit", as: Int.self) ?? 100_000, 5_000_000)
        return Greeting(message: "counted", primesBelow: limit, count: countPrimes(below: limit))
    }

    switch pprof {
    case .router(let configuration):
        app.mountPprof(PprofHandler(configuration: configuration))
    case .server(let configuration):
        app.lifecycle.use(PprofLifecycleHandler(server: PprofServer(configuration: configuration, logger: app.logger)))
    case .off:
        break
    }
}

@inline(never)
func countPrimes(below limit: Int) -> Int {
    var count = 0
    for n in 2..<max(2, limit) where isPrime(n) { count += 1 }
    return count
}

@inline(never)
func isPrime(_ n: Int) -> Bool {
    if n < 4 { return n > 1 }
    if n % 2 == 0 { return false }
    var d = 3
    while d * d <= n {
        if n % d == 0 { return false }
        d += 2
    }
    return true
}
