/// Optional bearer-token protection of the endpoints.
enum BearerToken {
    static let challenge = HTTPResponse(status: 401, headers: [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("X-Content-Type-Options", "nosniff"),
        ("WWW-Authenticate", "Bearer realm=\"pprof\""),
    ], body: Array("Unauthorized\n".utf8))

    /// Whether an `Authorization` header carries the token. The comparison
    /// takes the same time wherever the first difference is, so response
    /// times do not reveal the token byte by byte.
    static func authorizes(_ header: String?, token: String) -> Bool {
        guard let header else { return false }
        let scheme = "bearer "
        guard header.utf8.count > scheme.utf8.count,
              header.prefix(scheme.count).lowercased() == scheme else { return false }
        let presented = Array(header.utf8.dropFirst(scheme.utf8.count))
        return constantTimeEquals(presented, Array(token.utf8))
    }

    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        // Length may leak; contents may not.
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        let n = max(a.count, b.count)
        for i in 0..<n {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0
            difference |= x ^ y
        }
        return difference == 0
    }
}
