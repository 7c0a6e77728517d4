/// Responses shaped exactly as Go's net/http/pprof writes them, so that
/// `go tool pprof` and scrapers read our errors the way they read Go's.
extension HTTPResponse {
    /// Go's `serveError`: pprof prints the body only with `X-Go-Pprof` and text/plain.
    static func pprofError(_ status: Int, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Go-Pprof", "1"),
        ], body: Array((text + "\n").utf8))
    }

    /// A gzipped profile as an attachment named like Go's.
    static func profile(filename: String, _ body: [UInt8]) -> HTTPResponse {
        HTTPResponse(status: 200, headers: [
            ("Content-Type", "application/octet-stream"),
            ("Content-Disposition", "attachment; filename=\"\(filename)\""),
            ("X-Content-Type-Options", "nosniff"),
        ], body: body)
    }

    static func text(_ text: String, status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, headers: [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Content-Type-Options", "nosniff"),
        ], body: Array(text.utf8))
    }

    static func html(_ html: String) -> HTTPResponse {
        HTTPResponse(status: 200, headers: [
            ("Content-Type", "text/html; charset=utf-8"),
            ("X-Content-Type-Options", "nosniff"),
        ], body: Array(html.utf8))
    }

    /// Go's ServeMux answer for a path outside any route.
    static let notFound = HTTPResponse.text("404 page not found\n", status: 404)

    /// Go 1.23+'s ServeMux answer to a method its GET routes do not take.
    static func methodNotAllowed(allow: String) -> HTTPResponse {
        var r = HTTPResponse.text("Method Not Allowed\n", status: 405)
        r.headers.append(("Allow", allow))
        return r
    }

    /// Go's ServeMux redirect from `/debug/pprof` to `/debug/pprof/`.
    static func movedPermanently(to location: String) -> HTTPResponse {
        HTTPResponse(status: 301, headers: [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Location", location),
        ], body: Array("<a href=\"\(location)\">Moved Permanently</a>.\n\n".utf8))
    }
}
