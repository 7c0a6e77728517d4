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
public final class PprofServer: Sendable {
    private let configuration: Configuration
    private let http: HTTPServer
    private let bound = Mutex<(host: String, port: Int)?>(nil)

    /// Creates a server; nothing is bound until ``start()``.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        let endpoints = PprofEndpoints(settings: EndpointSettings(
            cpuSamplingRate: configuration.cpuSamplingRate,
            maxProfileSeconds: Int64(configuration.maxProfileSeconds)))
        self.http = HTTPServer(
            configuration: HTTPServerConfiguration(address: .tcp(host: configuration.host, port: configuration.port)),
            handler: { request, connection in endpoints.handle(request, isCancelled: { connection.isPeerGone() }) })
    }

    /// Creates and starts a server in one call.
    @discardableResult
    public static func start(_ configuration: Configuration = Configuration()) throws(PprofServerError) -> PprofServer {
        let server = PprofServer(configuration: configuration)
        try server.start()
        return server
    }

    /// Binds the listening socket and starts serving.
    ///
    /// - Throws: ``PprofServerError`` if the address is invalid or taken, or
    ///   if the server was already started.
    public func start() throws(PprofServerError) {
        let address: ListenAddress
        do {
            address = try http.start()
        } catch let error as HTTPServerError {
            throw PprofServerError(error)
        } catch {
            throw PprofServerError(kind: .system, message: "\(error)")
        }
        if case let .tcp(host, port) = address { bound.withLock { $0 = (host, port) } }
    }

    /// Stops listening, closes open connections and stops any CPU sampling
    /// they had started. Safe to call more than once.
    public func stop() {
        http.stop()
    }

    /// The port the server listens on once started (the real one when the
    /// configuration asked for port 0); nil before ``start()``.
    public var port: Int? { bound.withLock { $0?.port } }

    /// The `http://host:port` base URL once started; nil before ``start()``.
    public var baseURL: String? {
        bound.withLock { b in
            guard let b else { return nil }
            let host = b.host.contains(":") ? "[\(b.host)]" : b.host
            return "http://\(host):\(b.port)"
        }
    }
}
