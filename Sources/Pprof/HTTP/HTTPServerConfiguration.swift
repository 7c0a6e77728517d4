/// Settings of an `HTTPServer`. Values below 1 are treated as 1.
struct HTTPServerConfiguration: Sendable {
    var address: ListenAddress
    /// Connections served at once; one more gets "503 Service Unavailable".
    var maxConnections: Int = 32
    /// Read deadline: how long a connection may sit idle between requests,
    /// and how long a client may take to send one request once it started.
    /// Also the write stall limit: a send that makes no progress for this
    /// long closes the connection.
    var idleTimeoutSeconds: Int = 10
    /// Largest accepted Content-Length; larger gets "413".
    var maxRequestBodyBytes: Int = 1 << 20
    /// Bytes of header lines after the request line; more gets "431".
    var maxHeaderBytes: Int = 16 << 10
    /// Header lines per request; more gets "431".
    var maxHeaderCount: Int = 100
}

extension HTTPServerConfiguration {
    /// The request line may be this long (without its line end); longer gets "414".
    static let maxRequestLineBytes = 8 << 10
}
