/// Where an `HTTPServer` listens.
enum ListenAddress: Sendable, Hashable {
    /// A TCP address. `host` is an IPv4 literal, an IPv6 literal (with or
    /// without brackets) or "localhost" (bound as 127.0.0.1). Port 0 asks
    /// the kernel for a free port.
    case tcp(host: String, port: Int)
    /// A Unix domain stream socket at `path` (created with mode 0600).
    case unix(path: String)
}

extension ListenAddress: CustomStringConvertible {
    /// "host:port" ("[v6]:port" for IPv6 literals) or the socket path.
    /// This is the text carried by `HTTPServerError` cases.
    var description: String {
        switch self {
        case let .tcp(host, port):
            if host.contains(":") && !host.hasPrefix("[") {
                return "[\(host)]:\(port)"
            }
            return "\(host):\(port)"
        case let .unix(path):
            return path
        }
    }
}
