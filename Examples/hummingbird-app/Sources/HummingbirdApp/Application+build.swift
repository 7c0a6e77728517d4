import Foundation
import Hummingbird
import Logging
import Pprof

/// Where the app serves the pprof endpoints.
enum PprofMode: Sendable {
    /// On the app's own router and port, through ``PprofHandler``.
    case router(PprofServer.Configuration)
    /// On a separate ``PprofServer`` (loopback by default), run in the same
    /// `ServiceGroup` as the app.
    case server(PprofServer.Configuration)
    /// Not at all (`PPROF_ENABLED=0`).
    case off

    /// `PPROF_*` environment variables (see `PprofServer.Configuration.fromEnvironment`):
    /// with `PPROF_LISTEN` set, a separate server on that address; otherwise the router.
    static func fromEnvironment() throws -> PprofMode {
        guard let configuration = try PprofServer.Configuration.fromEnvironment() else { return .off }
        if let listen = ProcessInfo.processInfo.environment["PPROF_LISTEN"], !listen.isEmpty {
            return .server(configuration)
        }
        return .router(configuration)
    }
}

struct PrimeCount: ResponseEncodable {
    var below: Int
    var count: Int
}

/// The app's router: its own routes, plus pprof unless it runs on a server of its own.
func buildRouter(pprof: PprofMode) -> Router<BasicRequestContext> {
    let router = Router()
    router.get("/") { _, _ in "Hello from hummingbird-app. Try /primes/200000 and /debug/pprof/\n" }

    // Some CPU work to find in a profile.
    router.get("/primes/{limit}") { _, context -> PrimeCount in
        let limit = min(context.parameters.get("limit", as: Int.self) ?? 100_000, 5_000_000)
        return PrimeCount(below: limit, count: countPrimes(below: limit))
    }

    if case .router(let configuration) = pprof {
        router.mountPprof(PprofHandler(configuration: configuration))
    }
    return router
}

func buildApplication(pprof: PprofMode, host: String = "127.0.0.1", port: Int = 8080,
                      logger: Logger = Logger(label: "hummingbird-app")) -> some ApplicationProtocol {
    Application(router: buildRouter(pprof: pprof),
                configuration: .init(address: .hostname(host, port: port)),
                logger: logger)
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
