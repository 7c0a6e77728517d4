import Logging
import Synchronization

/// Serves Go-compatible `/debug/pprof` endpoints from inside this process.
///
/// The server runs on its own threads, independent of the app's event loops
/// and of Swift's cooperative thread pool, so it still answers when those
/// are stuck. It listens on loopback by default: profiles reveal code and data.
///
/// ```swift
/// import Pprof
///
/// let pprof = try PprofServer.start()   // http://127.0.0.1:6060/debug/pprof/
/// // go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=10
/// ```
///
/// With the `PprofServiceLifecycle` product it is also a swift-service-lifecycle
/// `Service`: add it to a `ServiceGroup` and it starts with the group and
/// stops on graceful shutdown.
public final class PprofServer: Sendable {
    /// The configuration the server was created with.
    public let configuration: Configuration
    private let logger: Logger
    private let http: HTTPServer
    private let bound = Mutex<ListenAddress?>(nil)

    /// Creates a server; nothing is bound until ``start()``.
    ///
    /// - Parameters:
    ///   - configuration: where to listen and how to sample.
    ///   - logger: where the server logs: one `info` line with the bound
    ///     address at start, warnings once. Silent by default.
    public init(configuration: Configuration = Configuration(), logger: Logger? = nil) {
        self.configuration = configuration
        // The profiler's own memory stays out of the heap profiles.
        (self.logger, self.http) = HeapSampler.ownWork {
            let logger = logger ?? Logger(label: "pprof", factory: { _ in SwiftLogNoOpLogHandler() })
            let handler = PprofHandler(configuration: configuration)
            let address: ListenAddress = configuration.unixSocketPath.map { .unix(path: $0) }
                ?? .tcp(host: configuration.host, port: configuration.port)
            let http = HTTPServer(
                configuration: HTTPServerConfiguration(address: address, maxConnections: max(1, configuration.maxConnections)),
                handler: { request, connection in handler.handle(request, isCancelled: { connection.isPeerGone() }) })
            return (logger, http)
        }
    }

    /// Creates and starts a server in one call.
    @discardableResult
    public static func start(_ configuration: Configuration = Configuration(), logger: Logger? = nil) throws(PprofServerError) -> PprofServer {
        try HeapSampler.ownWork { () throws(PprofServerError) -> PprofServer in
            let server = PprofServer(configuration: configuration, logger: logger)
            try server.start()
            return server
        }
    }

    /// Binds the listening socket and starts serving.
    ///
    /// - Throws: ``PprofServerError`` if the address is invalid or taken, or
    ///   if the server was already started.
    public func start() throws(PprofServerError) {
        try HeapSampler.ownWork { () throws(PprofServerError) in try startServing() }
    }

    private func startServing() throws(PprofServerError) {
        let address: ListenAddress
        do {
            address = try http.start()
        } catch let error as HTTPServerError {
            let wrapped = PprofServerError(error)
            logger.warning("pprof server could not start", metadata: ["error": "\(wrapped)"])
            throw wrapped
        } catch {
            throw PprofServerError(kind: .system, message: "\(error)")
        }
        bound.withLock { $0 = address }
        logger.info("pprof server listening", metadata: ["address": "\(Self.describe(address))"])
        if case let .tcp(host, _) = address, !Self.isLoopback(host) {
            logger.warning("pprof server listens on a non-loopback address; profiles reveal code and data",
                           metadata: ["address": "\(Self.describe(address))", "bearer_token": "\(configuration.bearerToken != nil)"])
        }
    }

    /// Stops listening, closes open connections (a CPU profile in flight
    /// ends early and sampling stops). Safe to call more than once.
    public func stop() {
        HeapSampler.ownWork { http.stop() }
    }

    /// Whether ``start()`` has succeeded.
    package var isStarted: Bool { bound.withLock { $0 != nil } }

    /// Connections being served now (for tests).
    var activeConnectionCount: Int { http.activeConnectionCount }

    /// The port the server listens on once started (the real one when the
    /// configuration asked for port 0); nil before ``start()`` and for Unix sockets.
    public var port: Int? {
        bound.withLock { if case let .tcp(_, port) = $0 { return port } else { return nil } }
    }

    /// The `http://host:port` base URL once started; nil before ``start()``
    /// and for Unix sockets.
    public var baseURL: String? {
        bound.withLock { address in
            guard case let .tcp(host, port) = address else { return nil }
            return "http://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        }
    }

    private static func describe(_ address: ListenAddress) -> String {
        switch address {
        case let .tcp(host, port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case let .unix(path): return "unix:\(path)"
        }
    }

    private static func isLoopback(_ host: String) -> Bool {
        host.hasPrefix("127.") || host == "::1" || host == "localhost"
    }
}
