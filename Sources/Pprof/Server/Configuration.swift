extension PprofServer {
    /// How the pprof server listens and samples.
    public struct Configuration: Sendable, Hashable {
        /// The address to listen on: an IPv4 or IPv6 literal, or `localhost`.
        /// Defaults to loopback (`127.0.0.1`): profiles reveal code and data.
        public var host: String
        /// The TCP port; 0 picks a free one (see ``PprofServer/port``).
        public var port: Int
        /// CPU samples per CPU-second of each thread. Go uses 100; the kernel
        /// delivers at most its tick rate (often 250).
        public var cpuSamplingRate: Int
        /// The longest `seconds` a profile request may ask for.
        public var maxProfileSeconds: Int

        /// - Parameters:
        ///   - host: IPv4/IPv6 literal or `localhost`; default `127.0.0.1`.
        ///   - port: default 6060, as in Go's examples; 0 picks a free port.
        public init(host: String = "127.0.0.1", port: Int = 6060, cpuSamplingRate: Int = 100, maxProfileSeconds: Int = 300) {
            self.host = host
            self.port = port
            self.cpuSamplingRate = cpuSamplingRate
            self.maxProfileSeconds = maxProfileSeconds
        }

        /// Parses `HOST:PORT` (`[::1]:6060` for IPv6), as taken by command-line flags.
        public init(listenAddress: String) throws(PprofServerError) {
            guard let colon = listenAddress.lastIndex(of: ":") else {
                throw PprofServerError(kind: .invalidAddress, message: "expected HOST:PORT, got \"\(listenAddress)\"")
            }
            var host = String(listenAddress[..<colon])
            let portText = listenAddress[listenAddress.index(after: colon)...]
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else {
                throw PprofServerError(kind: .invalidAddress, message: "expected HOST:PORT, got \"\(listenAddress)\"")
            }
            self.init(host: host, port: port)
        }
    }
}
