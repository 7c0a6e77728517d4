import Foundation
import HTTPTypes
import Hummingbird
import Pprof

extension RouterMethods {
    /// Serves swift-pprof's endpoints on this router: `GET`/`HEAD` for
    /// `/debug/pprof` and `/debug/pprof/**`, and `POST /debug/pprof/symbol`.
    ///
    /// Mount it on a group to put your own authentication in front:
    /// `router.group().add(middleware: MyAdminAuth()).mountPprof(handler)`.
    @discardableResult
    func mountPprof(_ handler: PprofHandler) -> Self {
        let respond: @Sendable (Request, Context) async throws -> Response = { request, _ in
            try await handler.respond(to: request)
        }
        for path: RouterPath in ["/debug/pprof", "/debug/pprof/**"] {
            get(path, use: respond)
            head(path, use: respond)
        }
        post("/debug/pprof/symbol", use: respond)
        return self
    }
}

extension PprofHandler {
    /// Translates a Hummingbird request to a pprof one and the answer back.
    func respond(to request: Hummingbird.Request) async throws -> Hummingbird.Response {
        // Only POST /debug/pprof/symbol has a body: a list of addresses.
        let body = request.method == .post ? try await request.body.collect(upTo: 1 << 20) : ByteBuffer()
        let rawPath = request.uri.path
        let answer = await respond(to: PprofHandler.Request(
            method: request.method.rawValue,
            path: rawPath.removingPercentEncoding ?? rawPath,   // Hummingbird's path is still percent-encoded
            query: request.uri.query ?? "",
            headers: request.headers.map { (name: $0.name.rawName, value: $0.value) },
            body: Array(body.readableBytesView)))
        var headers = HTTPFields()
        for (name, value) in answer.headers {
            if let name = HTTPField.Name(name) { headers.append(HTTPField(name: name, value: value)) }
        }
        let response = Hummingbird.Response(status: .init(code: answer.status), headers: headers,
                                body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.body)))
        // HEAD: the GET answer's headers (Content-Length included), no body.
        return request.method == .head ? response.createHeadResponse() : response
    }
}
