/// Why `HTTPServer.start()` failed. The payloads are for people: the
/// address as configured ("host:port", "[v6]:port" or the socket path), or
/// for `.system` the failing call and its errno text.
enum HTTPServerError: Error, Equatable {
    /// Not an IP literal or "localhost", port outside 0...65535, a Unix
    /// socket path that is empty or too long, or an address not on this host.
    case invalidAddress(String)
    /// Something else listens there (EADDRINUSE, or a live Unix socket).
    case addressInUse(String)
    /// EACCES/EPERM, e.g. a port below 1024 or an unwritable directory.
    case permissionDenied(String)
    /// `start()` was called before (a server starts at most once).
    case alreadyStarted
    /// Any other failure of a system call.
    case system(String)
}
