/// Settings of an `HTTPServer`. Values below 1 are treated as 1.
///
/// An open connection costs a descriptor and a few hundred bytes, not a
/// thread: only requests being answered take a worker thread. So the
/// connection limit can be high, and it is the worker limits that bound
/// the work the server does at once.
struct HTTPServerConfiguration: Sendable {
    var address: ListenAddress
    /// Connections open at once. When a newcomer finds them all taken, the
    /// one idle the longest (between requests, or still sending its head)
    /// is closed to make room; only when every connection has a request in
    /// progress does the newcomer get "503 Service Unavailable".
    var maxConnections: Int = 1024
    /// Worker threads: requests whose handler runs at once (a 30 s CPU
    /// profile holds one for 30 s). Further requests wait their turn.
    var maxConcurrentRequests: Int = 8
    /// Requests of one client (peer address; all Unix-socket peers count as
    /// one) whose handler runs at once; its further requests wait, so one
    /// client cannot take every worker.
    var maxConcurrentRequestsPerClient: Int = 4
    /// How long a connection may sit idle between requests. Also the write
    /// stall limit (a response that makes no progress for this long closes
    /// the connection) and the time a client has to send a body.
    var idleTimeoutSeconds: Int = 10
    /// How long a client has to send a complete request head, from its
    /// connection or from the first byte of the request (never more than
    /// `idleTimeoutSeconds`): then "408", or a quiet close if it sent nothing.
    var headTimeoutSeconds: Int = 5
    /// Largest accepted body (Content-Length, or chunked); larger gets "413".
    var maxRequestBodyBytes: Int = 1 << 20
    /// Bytes of header lines after the request line; more gets "431".
    var maxHeaderBytes: Int = 16 << 10
    /// Header lines per request; more gets "431".
    var maxHeaderCount: Int = 100
}

extension HTTPServerConfiguration {
    /// The request line may be this long (without its line end); longer gets "414".
    static let maxRequestLineBytes = 8 << 10

    /// Milliseconds for a complete head: the head timeout, capped by the idle one.
    var headTimeoutMilliseconds: Int { min(max(1, headTimeoutSeconds), max(1, idleTimeoutSeconds)) * 1000 }
    var idleTimeoutMilliseconds: Int { max(1, idleTimeoutSeconds) * 1000 }
}
