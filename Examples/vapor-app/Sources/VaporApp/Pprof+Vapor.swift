import Pprof
import Vapor

extension RoutesBuilder {
    /// Serves swift-pprof's endpoints on this router:
    /// `GET /debug/pprof`, `GET /debug/pprof/**` and `POST /debug/pprof/symbol`.
    /// Vapor answers `HEAD` with the `GET` route and drops the body itself.
    ///
    /// Group the builder first to put your own authentication in front:
    /// `app.grouped(MyAdminAuthenticator()).mountPprof(handler)`.
    func mountPprof(_ handler: PprofHandler) {
        let respond: @Sendable (Request) async throws -> Response = { request in
            await handler.respond(to: request)
        }
        get("debug", "pprof", use: respond)
        get("debug", "pprof", "**", use: respond)
        // pprof posts addresses here for remote symbolization; the body is small.
        on(.POST, "debug", "pprof", "symbol", body: .collect(maxSize: "1mb"), use: respond)
    }
}

extension PprofHandler {
    /// Translates a Vapor request to a pprof one and the answer back.
    func respond(to request: Vapor.Request) async -> Vapor.Response {
        let rawPath = request.url.path
        let answer = await respond(to: PprofHandler.Request(
            method: request.method.rawValue,
            path: rawPath.removingPercentEncoding ?? rawPath,   // Vapor's path is still percent-encoded
            query: request.url.query ?? "",
            headers: request.headers.map { (name: $0.name, value: $0.value) },
            body: request.body.data.map { Array($0.readableBytesView) } ?? []))
        return Vapor.Response(
            status: HTTPResponseStatus(statusCode: answer.status),
            headers: HTTPHeaders(answer.headers.map { ($0.name, $0.value) }),
            body: .init(buffer: ByteBuffer(bytes: answer.body)))
    }
}

/// Runs a ``PprofServer`` with the application: it starts when the app has
/// booted and stops when the app shuts down.
struct PprofLifecycleHandler: LifecycleHandler {
    let server: PprofServer

    func didBoot(_ application: Application) throws {
        try server.start()
    }

    func shutdown(_ application: Application) {
        server.stop()
    }
}
