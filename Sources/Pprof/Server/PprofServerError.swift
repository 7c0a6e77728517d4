/// Why the pprof server could not start.
public struct PprofServerError: Error, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public enum Kind: Sendable, Hashable {
        /// The host or port could not be parsed or is not a local address.
        case invalidAddress
        /// Another socket already listens on the address.
        case addressInUse
        /// The process may not bind the address.
        case permissionDenied
        /// ``PprofServer/start()`` was called on a running server.
        case alreadyRunning
        /// A configuration value (e.g. from the environment) is not valid.
        case invalidConfiguration
        /// Any other system error.
        case system
    }

    /// The kind of failure.
    public var kind: Kind
    /// A human-readable explanation.
    public var message: String

    /// The ``message``.
    public var description: String { message }

    init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    init(_ error: HTTPServerError) {
        switch error {
        case .invalidAddress(let m): self.init(kind: .invalidAddress, message: "invalid listen address: \(m)")
        case .addressInUse(let m): self.init(kind: .addressInUse, message: "address already in use: \(m)")
        case .permissionDenied(let m): self.init(kind: .permissionDenied, message: "permission denied: \(m)")
        case .alreadyStarted: self.init(kind: .alreadyRunning, message: "the pprof server is already running")
        case .system(let m): self.init(kind: .system, message: m)
        }
    }
}
