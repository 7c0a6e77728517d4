/// DNS-rebinding protection: a server bound to loopback answers only
/// requests that name a loopback host. A web page can make a browser send
/// requests to 127.0.0.1 under a name it controls (rebinding that name's
/// DNS record to 127.0.0.1); the browser then sends that name in `Host`,
/// which is how such requests are told apart and refused with 403.
///
/// Loopback names: `localhost` and `*.localhost` (RFC 6761), 127.0.0.0/8
/// and `::1`, any case, with or without a port. A request without `Host`
/// (HTTP/1.0 tools) is let through: browsers always send one. Other names
/// are allowed with ``PprofServer/Configuration/allowedHosts``.
struct HostCheck: Sendable {
    /// Lowercased extra names allowed (without ports).
    let allowed: Set<String>

    init(allowedHosts: [String]) {
        allowed = Set(allowedHosts.map { Self.normalize($0) })
    }

    static let forbidden = HTTPResponse.plainText(status: 403, "403 Forbidden: Host not allowed (see PPROF_ALLOWED_HOSTS)")

    /// Whether a request with this `Host` header may be answered.
    func permits(_ hostHeader: String?) -> Bool {
        guard let hostHeader else { return true }
        let host = Self.normalize(Self.stripPort(hostHeader))
        return Self.isLoopbackName(host) || allowed.contains(host)
    }

    static func isLoopbackName(_ host: String) -> Bool {
        if host == "localhost" || host.hasSuffix(".localhost") || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127"
            && parts.allSatisfy { part in UInt8(part).map { String($0) == part } ?? false }
    }

    /// "[::1]:6060" → "::1", "host:80" → "host", "host" → "host".
    private static func stripPort(_ value: String) -> Substring {
        let text = value.trimmingBlanks()
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            return text[text.index(after: text.startIndex)..<close]
        }
        if let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon {
            return text[..<colon]
        }
        return text
    }

    private static func normalize<S: StringProtocol>(_ host: S) -> String {
        var lowered = host.lowercased()
        if lowered.hasSuffix(".") { lowered.removeLast() }
        return lowered
    }
}
