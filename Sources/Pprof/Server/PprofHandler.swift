import Synchronization

/// Answers pprof requests for any HTTP server or router, so an app can mount
/// the endpoints on its own routes instead of (or beside) ``PprofServer``.
///
/// ```swift
/// let pprof = PprofHandler()
/// // in a route for GET/HEAD/POST /debug/pprof/**:
/// let response = await pprof.respond(to: .init(method: "GET", path: "/debug/pprof/heap", query: "debug=1"))
/// ```
///
/// Profiles block for as long as they sample (`seconds`), so ``respond(to:)``
/// runs each request on a thread of its own, never on Swift's cooperative
/// pool; cancelling the calling task ends a CPU profile early.
public struct PprofHandler: Sendable {
    /// A request, as any router can describe it.
    public struct Request: Sendable {
        /// `GET`, `HEAD` or `POST` (`POST` only for `/debug/pprof/symbol`).
        public var method: String
        /// The path, starting with `/debug/pprof` (or `/debug/fgprof`); not percent-encoded.
        public var path: String
        /// The raw query string after `?`, without the `?`, still encoded.
        public var query: String
        /// Request headers (only `Authorization` is read).
        public var headers: [(name: String, value: String)]
        /// The body (read only by `POST /debug/pprof/symbol`).
        public var body: [UInt8]

        /// Describes a request; only `method` and `path` are always needed.
        public init(method: String, path: String, query: String = "",
                    headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.body = body
        }
    }

    /// A response to send as it is.
    public struct Response: Sendable {
        /// The HTTP status code.
        public var status: Int
        /// Headers, including `Content-Type`; `Content-Length` is left to the server.
        public var headers: [(name: String, value: String)]
        /// The body; send none for `HEAD`.
        public var body: [UInt8]

        /// Creates a response (for adapters and their tests).
        public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
            self.status = status
            self.headers = headers
            self.body = body
        }
    }

    private let endpoints: PprofEndpoints
    private let bearerToken: String?

    /// Creates a handler with the endpoints' settings.
    ///
    /// - Parameter configuration: the sampling settings and bearer token are
    ///   used; the listen address is ignored here.
    public init(configuration: PprofServer.Configuration = .init()) {
        // The endpoints' tables are the profiler's memory, not the caller's.
        self.endpoints = HeapSampler.ownWork { PprofEndpoints(settings: EndpointSettings(configuration)) }
        self.bearerToken = configuration.bearerToken
        SymbolPreload.startOnce()
    }

    /// Answers a request. Runs on a dedicated thread and suspends the caller
    /// until the answer is ready.
    public func respond(to request: Request) async -> Response {
        let box = HeapSampler.ownWork { CancelFlag() }
        return await withTaskCancellationHandler {
            // Checked, not unsafe: with the unsafe one ThreadSanitizer reports
            // a race between the resuming thread and the suspending task.
            await withCheckedContinuation { (continuation: CheckedContinuation<Response, Never>) in
                HeapSampler.ownWork {
                    let spawned = PThread.spawn(name: "pprof-handler", joinable: false) {
                        continuation.resume(returning: self.respondBlocking(to: request, isCancelled: { box.isSet }))
                    }
                    if case .failure = spawned {
                        continuation.resume(returning: Response(HTTPResponse.pprofError(503, "pprof: no thread available for this request")))
                    }
                }
            }
        } onCancel: {
            box.set()
        }
    }

    /// Answers a request on the calling thread, which it may block for the
    /// whole profile duration. `isCancelled` is polled to end a profile early.
    /// The profiler's own allocations on this thread stay out of the heap
    /// profiles (the response handed back is the caller's).
    public func respondBlocking(to request: Request, isCancelled: @escaping @Sendable () -> Bool = { false }) -> Response {
        HeapSampler.ownWork {
            let target = request.query.isEmpty ? request.path : request.path + "?" + request.query
            let http = HTTPRequest(method: request.method, target: target, path: request.path, rawQuery: request.query,
                                   headers: request.headers, body: request.body)
            return Response(handle(http, isCancelled: isCancelled))
        }
    }

    /// The built-in server's entry point: authorization, then the endpoints.
    func handle(_ request: HTTPRequest, isCancelled: @escaping () -> Bool) -> HTTPResponse {
        // The flame graph page holds no data; it sends the token on its own requests.
        if let token = bearerToken, request.path != PprofEndpoints.prefix + FlameGraphPage.name,
           !BearerToken.authorizes(request.header("Authorization"), token: token) {
            return BearerToken.challenge
        }
        return endpoints.handle(request, isCancelled: isCancelled)
    }
}

extension PprofHandler.Response {
    init(_ r: HTTPResponse) {
        self.init(status: r.status, headers: r.headers, body: r.body)
    }
}

/// Set once, read from any thread.
private final class CancelFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}

extension EndpointSettings {
    init(_ c: PprofServer.Configuration) {
        self.init(cpuSamplingRate: c.cpuSamplingRate, maxProfileSeconds: Int64(c.maxProfileSeconds),
                  fullFunctionNames: c.fullFunctionNames)
    }
}

extension SymbolPreload {
    /// An address in this file's compile unit, for the read-ahead
    /// (`requestPathAddresses`). Returns its own number: identical
    /// functions could be merged into one.
    static let pprofHandlerUnit: @convention(c) () -> Int = { 4 }
}
