import Glibc
import Synchronization

/// A small HTTP/1.1 server on its own pthreads: one accept thread plus one
/// thread per connection, so it keeps answering while the application's
/// event loops or Swift's cooperative pool are stuck, and a slow handler
/// (a 30 s CPU profile) never holds up another request.
///
/// - HTTP/1.0 and 1.1, keep-alive (1.1 unless `Connection: close`; 1.0 only
///   with `Connection: keep-alive`), pipelined requests answered in order.
/// - Request bodies: Content-Length only, up to `maxRequestBodyBytes` (else
///   413). Any Transfer-Encoding (chunked) gets 501; `Expect: 100-continue`
///   gets its interim 100.
/// - Refused requests (400 malformed, 414 request line over 8 KiB, 431 header
///   limits, 408 request not complete within the idle timeout, 505 HTTP/2+)
///   get a short text/plain answer and the connection is closed.
/// - More than `maxConnections` open connections (idle keep-alive ones
///   count): the newcomer gets 503 (no body, `Retry-After: 1`) and is
///   closed, without a thread.
/// - Every closing is graceful: shutdown(SHUT_WR), then what the client still
///   sends is drained (at most 2 s, 1 MiB) so no reset destroys the answer.
/// - All calls restart after EINTR; sends use MSG_NOSIGNAL; sockets are
///   close-on-exec; threads are named "pprof-accept" and "pprof-conn".
///
/// A start that failed may be retried. Releasing the last reference stops
/// the server.
final class HTTPServer: Sendable {
    private let core: HTTPServerCore

    init(configuration: HTTPServerConfiguration,
         handler: @escaping @Sendable (HTTPRequest, HTTPClientConnection) -> HTTPResponse) {
        core = HTTPServerCore(configuration: configuration, handler: handler)
    }

    deinit {
        core.stop()
    }

    /// Binds, listens, starts the accept thread. Returns the bound address
    /// (numeric host, port 0 resolved to the real port). Throws
    /// `HTTPServerError`; a second start (also after `stop()`) throws
    /// `.alreadyStarted`.
    func start() throws -> ListenAddress {
        try core.start()
    }

    /// Closes the listener (and removes a Unix socket file), shuts down open
    /// connections, waits up to about 2 s for their threads to finish.
    /// Handlers still running after that finish on their own; their
    /// `HTTPClientConnection.isPeerGone()` is true. Idempotent.
    func stop() {
        core.stop()
    }

    /// Connections being served now (for tests).
    var activeConnectionCount: Int {
        core.activeConnectionCount
    }
}

/// The server's shared state, kept apart from `HTTPServer` so that its
/// threads do not keep the public object (whose deinit stops them) alive.
final class HTTPServerCore: Sendable {
    let configuration: HTTPServerConfiguration
    let handler: @Sendable (HTTPRequest, HTTPClientConnection) -> HTTPResponse
    private let state = Mutex(State())

    private struct State {
        var phase = Phase.idle
        var connections: [ObjectIdentifier: HTTPClientConnection] = [:]
    }

    private enum Phase {
        case idle
        case running(Running)
        case stopped
    }

    private struct Running {
        let listener: HTTPListener
        let wakeReader: Int32
        let wakeWriter: Int32
        let acceptThread: pthread_t
    }

    /// How long `stop()` waits for connection threads.
    static let stopGraceMilliseconds = 2000

    init(configuration: HTTPServerConfiguration,
         handler: @escaping @Sendable (HTTPRequest, HTTPClientConnection) -> HTTPResponse) {
        self.configuration = configuration
        self.handler = handler
    }

    var activeConnectionCount: Int {
        state.withLock { $0.connections.count }
    }

    func start() throws(HTTPServerError) -> ListenAddress {
        try state.withLock { (state: inout State) throws(HTTPServerError) -> ListenAddress in
            guard case .idle = state.phase else { throw .alreadyStarted }
            let listener = try HTTPListener.open(configuration.address)
            var wake: [Int32] = [-1, -1]
            let socketType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
            guard socketpair(AF_UNIX, socketType, 0, &wake) == 0 else {
                let code = errno
                listener.close()
                throw .system("socketpair: \(SocketIO.errorText(code))")
            }
            let listenFD = listener.descriptor
            let wakeReader = wake[0]
            let isUnix = if case .unix = listener.boundAddress { true } else { false }
            switch PThread.spawn(name: "pprof-accept", joinable: true, { [self] in
                HTTPAcceptLoop(core: self, listener: listenFD, wakeReader: wakeReader, isUnix: isUnix).run()
            }) {
            case let .success(thread):
                state.phase = .running(Running(listener: listener, wakeReader: wake[0],
                                               wakeWriter: wake[1], acceptThread: thread))
                return listener.boundAddress
            case let .failure(error):
                listener.close()
                SocketIO.closeDescriptor(wake[0])
                SocketIO.closeDescriptor(wake[1])
                throw error
            }
        }
    }

    func stop() {
        let running: Running? = state.withLock { state in
            switch state.phase {
            case .idle:
                state.phase = .stopped
                return nil
            case .stopped:
                return nil
            case let .running(running):
                state.phase = .stopped
                return running
            }
        }
        guard let running else { return }

        var byte: UInt8 = 1
        var sent: Int
        repeat { sent = send(running.wakeWriter, &byte, 1, Int32(MSG_NOSIGNAL)) } while sent < 0 && errno == EINTR
        PThread.join(running.acceptThread)
        running.listener.close()
        SocketIO.closeDescriptor(running.wakeReader)
        SocketIO.closeDescriptor(running.wakeWriter)

        for connection in state.withLock({ Array($0.connections.values) }) {
            connection.shutdownForStop()
        }
        let deadline = Deadline.now().adding(milliseconds: Self.stopGraceMilliseconds)
        while activeConnectionCount > 0 && !deadline.hasPassed {
            usleep(5_000)
        }
    }

    /// Called by the accept thread: registers a connection unless the limit
    /// is reached.
    func admit(_ connection: HTTPClientConnection) -> Bool {
        state.withLock { state in
            guard state.connections.count < max(1, configuration.maxConnections) else { return false }
            state.connections[ObjectIdentifier(connection)] = connection
            return true
        }
    }

    /// Called when a connection's thread is done with it (or never started).
    func release(_ connection: HTTPClientConnection) {
        _ = state.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(connection)) }
    }
}
