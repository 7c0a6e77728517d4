internal import CPprof
import Glibc
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
    /// The configuration in effect: the one the server was created with,
    /// with the `PPROF_*` environment variables applied (see
    /// ``Configuration/readsEnvironment``).
    public let configuration: Configuration
    private let logger: Logger?
    private let http: HTTPServer
    private let bound = Mutex<BoundAddress?>(nil)
    /// Why the environment could not be applied, thrown by ``start()``.
    private let environmentError: PprofServerError?
    /// False when `PPROF_ENABLED` switched serving off.
    private let enabled: Bool

    /// Creates a server; nothing is bound until ``start()``.
    ///
    /// - Parameters:
    ///   - configuration: where to listen and how to sample. Unless
    ///     ``Configuration/readsEnvironment`` is false, `PPROF_*` variables
    ///     fill in the settings it leaves at their defaults.
    ///   - logger: where the server logs: one `info` line with the bound
    ///     address at start, warnings once. Without one, warnings go to
    ///     standard error and nothing else is printed.
    public convenience init(configuration: Configuration = Configuration(), logger: Logger? = nil) {
        self.init(configuration: configuration, logger: logger,
                  environment: { name in getenv(name).map { String(cString: $0) } })
    }

    init(configuration: Configuration, logger: Logger?, environment: (String) -> String?) {
        var effective = configuration
        var environmentError: PprofServerError?
        var enabled = true
        if configuration.readsEnvironment {
            do throws(PprofServerError) {
                if let resolved = try Configuration.fromEnvironment(over: configuration, lookup: environment) {
                    effective = resolved
                } else {
                    enabled = false
                }
            } catch {
                environmentError = error
            }
        }
        self.configuration = effective
        self.environmentError = environmentError
        self.enabled = enabled
        self.logger = logger
        let settings = effective
        // The profiler's own memory stays out of the heap profiles.
        self.http = HeapSampler.ownWork {
            let handler = PprofHandler(configuration: settings)
            let address: ListenAddress = settings.unixSocketPath.map { .unix(path: $0) }
                ?? .tcp(host: settings.host, port: settings.port)
            let hostCheck = settings.unixSocketPath == nil && HostCheck.isLoopbackName(settings.host.lowercased())
                ? HostCheck(allowedHosts: settings.allowedHosts) : nil
            return HTTPServer(
                configuration: HTTPServerConfiguration(
                    address: address, maxConnections: settings.maxConnections,
                    maxConcurrentRequests: settings.maxConcurrentRequests,
                    maxConcurrentRequestsPerClient: settings.maxConcurrentRequestsPerClient),
                handler: { request, connection in
                    if let hostCheck, !hostCheck.permits(request.header("Host")) { return HostCheck.forbidden }
                    return handler.handle(request, isCancelled: { connection.isPeerGone() })
                })
        }
    }

    /// Creates and starts a server in one call, safe as an app's first line.
    ///
    /// ```swift
    /// let pprof = try PprofServer.start()   // a taken port is logged; the app goes on
    /// ```
    ///
    /// `PPROF_*` variables apply as for ``init(configuration:logger:)``.
    /// When the server cannot start (the port is taken, a `PPROF_*` value is
    /// not valid, an empty bearer token) the reason is logged (to standard
    /// error without a logger) and the server returned does not serve
    /// (``isServing`` is false); with `required` the error is thrown instead.
    ///
    /// - Throws: ``PprofServerError``, only when `required` is true.
    @discardableResult
    public static func start(_ configuration: Configuration = Configuration(), logger: Logger? = nil,
                             required: Bool = false) throws(PprofServerError) -> PprofServer {
        let server = HeapSampler.ownWork { PprofServer(configuration: configuration, logger: logger) }
        do {
            try server.start()
        } catch where !required {
            // Logged by start(); profiling is optional, the app is not.
        }
        return server
    }

    /// Binds the listening socket and starts serving. Does nothing when
    /// `PPROF_ENABLED` switched serving off.
    ///
    /// It also installs the library's SIGPROF handler, so that from here on a
    /// SIGPROF the library did not send (`kill -PROF`) cannot kill the
    /// process: it goes to the handler the app installed before, if any.
    ///
    /// - Throws: ``PprofServerError`` if the address is invalid or taken, a
    ///   `PPROF_*` variable or the bearer token is not valid, or the server
    ///   was already started. The reason is also logged.
    public func start() throws(PprofServerError) {
        try HeapSampler.ownWork { () throws(PprofServerError) in
            do throws(PprofServerError) {
                try bind()
            } catch {
                warn("pprof server could not start: \(error)", ["error": "\(error)"])
                throw error
            }
        }
    }

    private func bind() throws(PprofServerError) {
        if let environmentError { throw environmentError }
        guard enabled else {
            logger?.info("pprof server disabled by PPROF_ENABLED")
            return
        }
        if let token = configuration.bearerToken, token.trimmingBlanks().isEmpty {
            throw PprofServerError(kind: .invalidConfiguration,
                                   message: "the bearer token is empty: set a token, or nil for none")
        }
        // From here on a SIGPROF we did not send (`kill -PROF`) is harmless:
        // passed to the app's own handler if it installed one first, else dropped.
        let sigprof = cpprof_sigprof_prepare()
        if sigprof != 0 {
            warn("pprof could not install its SIGPROF handler (errno \(sigprof))", ["errno": "\(sigprof)"])
        }
        let listening: ListenAddress
        do {
            listening = try http.start()
        } catch let error as HTTPServerError {
            throw PprofServerError(error)
        } catch {
            throw PprofServerError(kind: .system, message: "\(error)")
        }
        let address: BoundAddress = switch listening {
        case let .tcp(host, port): .tcp(host: host, port: port)
        case let .unix(path): .unix(path: path)
        }
        bound.withLock { $0 = address }
        // The read-ahead's rehearsal of a first request runs on this server's workers.
        SymbolPreload.offerWorkers(owner: ObjectIdentifier(self)) { [weak http] body in
            http?.runOnWorker(body) ?? false
        }
        logger?.info("pprof server listening", metadata: ["address": "\(address)"])
        if case let .tcp(host, _) = address, !HostCheck.isLoopbackName(host.lowercased()) {
            warn("pprof server listens on a non-loopback address \(address); profiles reveal code and data",
                 ["address": "\(address)", "bearer_token": "\(configuration.bearerToken != nil)"])
        }
    }

    /// To the logger if there is one, else one line on standard error: a
    /// warning must not vanish because the app passed no logger.
    private func warn(_ message: String, _ metadata: Logger.Metadata) {
        if let logger {
            logger.warning("\(message)", metadata: metadata)
            return
        }
        let line = Array("warning: \(message)\n".utf8)
        line.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
    }

    /// Stops listening, closes open connections (a CPU profile in flight
    /// ends early and sampling stops). Safe to call more than once.
    public func stop() {
        SymbolPreload.withdrawWorkers(owner: ObjectIdentifier(self))
        HeapSampler.ownWork { http.stop() }
    }

    /// Whether ``start()`` succeeded (a server that ``start(_:logger:required:)``
    /// could not start, or that `PPROF_ENABLED` switched off, is not serving).
    public var isServing: Bool { bound.withLock { $0 != nil } }

    /// Where a started server listens.
    public enum BoundAddress: Sendable, Hashable, CustomStringConvertible {
        /// A TCP address: the numeric host, and the real port (the one the
        /// kernel picked when the configuration asked for port 0; never 0).
        case tcp(host: String, port: Int)
        /// A Unix-domain socket.
        case unix(path: String)

        /// `host:port` (`[v6]:port`), or `unix:path`, as `Configuration(listenAddress:)` reads it.
        public var description: String {
            switch self {
            case let .tcp(host, port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case let .unix(path): return "unix:\(path)"
            }
        }
    }

    /// Where the server listens: nil exactly when it is not serving (before
    /// ``start()``, after a failed start, or switched off by `PPROF_ENABLED`).
    /// A TCP server's port is the case's non-optional `port`:
    ///
    /// ```swift
    /// let pprof = try PprofServer.start(.init(port: 0), required: true)
    /// if case let .tcp(_, port)? = pprof.boundAddress { print("pprof on port \(port)") }
    /// ```
    public var boundAddress: BoundAddress? { bound.withLock { $0 } }

    /// Whether ``start()`` has succeeded.
    package var isStarted: Bool { isServing }

    /// Connections being served now (for tests).
    var activeConnectionCount: Int { http.activeConnectionCount }

    /// ``boundAddress``'s port, for a TCP server that is serving (the real
    /// one when the configuration asked for port 0); nil otherwise.
    public var port: Int? {
        if case let .tcp(_, port)? = boundAddress { return port } else { return nil }
    }

    /// The `http://host:port` base URL once started; nil before ``start()``
    /// and for Unix sockets.
    public var baseURL: String? {
        guard case let .tcp(host, port)? = boundAddress else { return nil }
        return "http://\(host.contains(":") ? "[\(host)]" : host):\(port)"
    }
}

extension SymbolPreload {
    /// An address in this file's compile unit, for the read-ahead
    /// (`requestPathAddresses`). Returns its own number: identical
    /// functions could be merged into one.
    static let pprofServerUnit: @convention(c) () -> Int = { 3 }
}
