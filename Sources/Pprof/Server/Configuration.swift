import Glibc

extension PprofServer {
    /// How the pprof server listens, samples and protects its endpoints.
    public struct Configuration: Sendable, Hashable {
        /// The address to listen on: an IPv4 or IPv6 literal, or `localhost`.
        /// Defaults to loopback (`127.0.0.1`): profiles reveal code and data.
        public var host: String
        /// The TCP port; 0 picks a free one (see ``PprofServer/port``).
        public var port: Int
        /// When set, listen on this Unix-domain socket (created with mode
        /// 0600) instead of TCP; `host` and `port` are then ignored.
        public var unixSocketPath: String?
        /// When set, every request must send `Authorization: Bearer <token>`;
        /// others get `401 Unauthorized`. Compared in constant time.
        public var bearerToken: String?
        /// CPU samples per CPU-second of each thread. Go uses 100; the kernel
        /// delivers at most its tick rate (often 250).
        public var cpuSamplingRate: Int
        /// The longest `seconds` a profile request may ask for.
        public var maxProfileSeconds: Int
        /// Connections open at once, idle ones included. An open connection
        /// costs a descriptor, not a thread; when they are all taken, a
        /// newcomer closes the one idle the longest, and gets `503` only if
        /// every connection has a request in progress.
        public var maxConnections: Int
        /// Name functions by their full demangled Swift names (with types,
        /// generic signatures and specialisation details) instead of short
        /// ones such as `closure #1 in App.Handler.load(id:)`. A request can
        /// also ask with `names=full` (or `names=short`). Either way each
        /// function's pprof `system_name` is its mangled symbol.
        public var fullFunctionNames = false
        /// Requests answered at once (worker threads); more wait their turn.
        /// A CPU profile holds one for its whole window.
        public var maxConcurrentRequests: Int
        /// Requests of one client (IP address) answered at once; its others
        /// wait, so that one client cannot take every worker.
        public var maxConcurrentRequestsPerClient: Int

        /// Host names, besides loopback ones, that requests to a
        /// loopback-bound server may name in `Host`. Others get `403`: that
        /// stops web pages from reaching the server through DNS rebinding.
        /// Needed only behind a proxy or tunnel that keeps its own `Host`.
        public var allowedHosts: [String] = []
        /// Whether `PPROF_*` environment variables (see
        /// ``fromEnvironment(defaults:)``) fill in the settings this
        /// configuration leaves at their defaults. Precedence: what code
        /// set, then the environment, then the defaults. Set to false to
        /// ignore the environment.
        public var readsEnvironment = true

        /// Creates a configuration; every parameter has a default.
        ///
        /// - Parameters:
        ///   - host: IPv4/IPv6 literal or `localhost`; default `127.0.0.1`.
        ///   - port: default 6060, as in Go's examples; 0 picks a free port.
        ///   - unixSocketPath: listen on this Unix-domain socket instead of TCP.
        ///   - bearerToken: require `Authorization: Bearer <token>` on every request.
        ///   - cpuSamplingRate: CPU samples per CPU-second of each thread; default 100.
        ///   - maxProfileSeconds: the longest `seconds` a request may ask for; default 300.
        ///   - maxConnections: connections open at once; default 1024.
        ///   - maxConcurrentRequests: requests answered at once; default 8.
        ///   - maxConcurrentRequestsPerClient: requests of one client answered at once; default 4.
        public init(host: String = "127.0.0.1", port: Int = 6060, unixSocketPath: String? = nil,
                    bearerToken: String? = nil, cpuSamplingRate: Int = 100, maxProfileSeconds: Int = 300,
                    maxConnections: Int = 1024, maxConcurrentRequests: Int = 8,
                    maxConcurrentRequestsPerClient: Int = 4) {
            self.host = host
            self.port = port
            self.unixSocketPath = unixSocketPath
            self.bearerToken = bearerToken
            self.cpuSamplingRate = cpuSamplingRate
            self.maxProfileSeconds = maxProfileSeconds
            self.maxConnections = maxConnections
            self.maxConcurrentRequests = maxConcurrentRequests
            self.maxConcurrentRequestsPerClient = maxConcurrentRequestsPerClient
        }

        /// Parses a listen address: `HOST:PORT` (`[::1]:6060` for IPv6) or
        /// `unix:/path/to/socket`, as taken by command-line flags.
        public init(listenAddress: String) throws(PprofServerError) {
            self.init()
            try setListenAddress(listenAddress)
        }

        mutating func setListenAddress(_ text: String) throws(PprofServerError) {
            if text.hasPrefix("unix:") {
                let path = String(text.dropFirst(5))
                guard !path.isEmpty else {
                    throw PprofServerError(kind: .invalidAddress, message: "expected unix:/path, got \"\(text)\"")
                }
                unixSocketPath = path
                return
            }
            guard let colon = text.lastIndex(of: ":") else {
                throw PprofServerError(kind: .invalidAddress, message: "expected HOST:PORT, got \"\(text)\"")
            }
            var host = String(text[..<colon])
            let portText = text[text.index(after: colon)...]
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else {
                throw PprofServerError(kind: .invalidAddress, message: "expected HOST:PORT, got \"\(text)\"")
            }
            self.host = host
            self.port = port
            self.unixSocketPath = nil
        }

        /// Reads the configuration ops can set without a code change:
        ///
        /// | variable | meaning |
        /// |---|---|
        /// | `PPROF_ENABLED` | `0`, `false`, `no` or `off`: do not serve (returns nil) |
        /// | `PPROF_LISTEN` | `HOST:PORT` or `unix:/path` |
        /// | `PPROF_BEARER_TOKEN` | require this bearer token |
        /// | `PPROF_MAX_PROFILE_SECONDS` | the longest profile a request may ask for |
        /// | `PPROF_CPU_SAMPLING_RATE` | CPU samples per CPU-second per thread |
        /// | `PPROF_ALLOWED_HOSTS` | comma-separated names added to ``allowedHosts`` |
        ///
        /// An empty or blank `PPROF_BEARER_TOKEN` is an error, not "no token".
        /// Variables not set keep the values of `defaults`.
        /// - Returns: nil when `PPROF_ENABLED` switches serving off.
        /// - Throws: ``PprofServerError`` with kind `.invalidConfiguration`
        ///   naming the variable whose value is not valid.
        public static func fromEnvironment(defaults: Configuration = Configuration()) throws(PprofServerError) -> Configuration? {
            try fromEnvironment(defaults: defaults, lookup: { name in getenv(name).map { String(cString: $0) } })
        }

        static func fromEnvironment(defaults: Configuration,
                                    lookup: (String) -> String?) throws(PprofServerError) -> Configuration? {
            try fromEnvironment(defaults: defaults, lookup: lookup, keeping: { _ in false })
        }

        /// The environment over `configuration`, for the settings it left at
        /// their defaults (what code set wins).
        static func fromEnvironment(over configuration: Configuration,
                                    lookup: (String) -> String?) throws(PprofServerError) -> Configuration? {
            let d = Configuration()
            let c = configuration
            return try fromEnvironment(defaults: configuration, lookup: lookup, keeping: { setting in
                switch setting {
                case .listen: c.host != d.host || c.port != d.port || c.unixSocketPath != d.unixSocketPath
                case .bearerToken: c.bearerToken != d.bearerToken
                case .maxProfileSeconds: c.maxProfileSeconds != d.maxProfileSeconds
                case .cpuSamplingRate: c.cpuSamplingRate != d.cpuSamplingRate
                case .allowedHosts: false  // added to, never replaced
                }
            })
        }

        enum Setting {
            case listen, bearerToken, maxProfileSeconds, cpuSamplingRate, allowedHosts
        }

        private static func fromEnvironment(defaults: Configuration, lookup: (String) -> String?,
                                            keeping: (Setting) -> Bool) throws(PprofServerError) -> Configuration? {
            var c = defaults
            if let enabled = lookup("PPROF_ENABLED")?.lowercased() {
                switch enabled {
                case "0", "false", "no", "off": return nil
                case "1", "true", "yes", "on", "": break
                default: throw .invalidConfiguration("PPROF_ENABLED", enabled)
                }
            }
            if let listen = lookup("PPROF_LISTEN"), !listen.isEmpty, !keeping(.listen) { try c.setListenAddress(listen) }
            if let token = lookup("PPROF_BEARER_TOKEN") {
                // Set but empty would silently mean "no authentication": fail closed.
                guard !token.trimmingBlanks().isEmpty else {
                    throw PprofServerError(kind: .invalidConfiguration,
                                           message: "PPROF_BEARER_TOKEN is set but empty: set a token, or unset the variable")
                }
                if !keeping(.bearerToken) { c.bearerToken = token }
            }
            if let text = lookup("PPROF_MAX_PROFILE_SECONDS") {
                guard let v = Int(text), v > 0 else { throw .invalidConfiguration("PPROF_MAX_PROFILE_SECONDS", text) }
                if !keeping(.maxProfileSeconds) { c.maxProfileSeconds = v }
            }
            if let text = lookup("PPROF_CPU_SAMPLING_RATE") {
                guard let v = Int(text), (1...1000).contains(v) else { throw .invalidConfiguration("PPROF_CPU_SAMPLING_RATE", text) }
                if !keeping(.cpuSamplingRate) { c.cpuSamplingRate = v }
            }
            if let text = lookup("PPROF_ALLOWED_HOSTS") {
                c.allowedHosts += text.split(separator: ",").map { String($0.trimmingBlanks()) }.filter { !$0.isEmpty }
            }
            return c
        }
    }
}

extension PprofServerError {
    static func invalidConfiguration(_ variable: String, _ value: String) -> PprofServerError {
        PprofServerError(kind: .invalidConfiguration, message: "\(variable)=\"\(value)\" is not valid")
    }
}
