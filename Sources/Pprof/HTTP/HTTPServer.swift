import Glibc
import Synchronization

/// A small HTTP/1.1 server on its own pthreads: one event-loop thread does
/// all the socket work for every connection, and a small pool of worker
/// threads runs the handlers. So it keeps answering while the application's
/// event loops or Swift's cooperative pool are stuck, a slow handler (a 30 s
/// CPU profile) never holds up another request, and idle or slow clients
/// cost descriptors, not threads (see `HTTPEventLoop`).
///
/// - HTTP/1.0 and 1.1, keep-alive (1.1 unless `Connection: close`; 1.0 only
///   with `Connection: keep-alive`), pipelined requests answered in order.
/// - Request bodies: Content-Length or chunked, up to `maxRequestBodyBytes`
///   (else 413); another Transfer-Encoding gets 501, both framings 400;
///   `Expect: 100-continue` gets its interim 100.
/// - Refused requests (400 malformed, 414 request line over 8 KiB, 431 header
///   limits, 408 request not complete in time, 505 HTTP/2+) get a short
///   text/plain answer and the connection is closed.
/// - `maxConnections` open connections; a newcomer over it closes the one
///   idle the longest, or gets 503 (no body, `Retry-After: 1`) when every
///   connection has a request in progress.
/// - Every closing is graceful: shutdown(SHUT_WR), then what the client still
///   sends is drained (at most 2 s, 1 MiB) so no reset destroys the answer.
/// - Sends use MSG_NOSIGNAL; sockets are non-blocking and close-on-exec;
///   threads are named "pprof-http" and "pprof-worker".
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

    /// Binds, listens, starts the event-loop thread. Returns the bound
    /// address (numeric host, port 0 resolved to the real port). Throws
    /// `HTTPServerError`; a second start (also after `stop()`) throws
    /// `.alreadyStarted`.
    func start() throws -> ListenAddress {
        try core.start()
    }

    /// Closes the listener (and removes a Unix socket file) and every
    /// connection, waits up to about 2 s for running handlers. Handlers
    /// still running after that finish on their own; their
    /// `HTTPClientConnection.isPeerGone()` is true. Idempotent.
    func stop() {
        core.stop()
    }

    /// Runs `body` on a worker thread, queued as a request would be: the
    /// server's own work. False when stopped or no worker thread could start.
    func runOnWorker(_ body: @escaping @Sendable () -> Void) -> Bool {
        core.runOnWorker(body)
    }

    /// Connections open now, idle ones included (for tests).
    var activeConnectionCount: Int {
        core.openConnections
    }
}

/// The server's shared state, kept apart from `HTTPServer` so that its
/// threads do not keep the public object (whose deinit stops them) alive.
/// Workers hand their responses to the event loop through it.
final class HTTPServerCore: Sendable {
    let configuration: HTTPServerConfiguration
    let handler: @Sendable (HTTPRequest, HTTPClientConnection) -> HTTPResponse
    private let pool: HTTPWorkerPool
    private let state = Mutex(State())
    private let open = Atomic<Int>(0)

    private struct State {
        var phase = Phase.idle
        /// Responses waiting for the event loop, by connection number.
        var completions: [(Int, HTTPResponse)] = []
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
        let loopThread: pthread_t
    }

    /// How long `stop()` waits for running handlers.
    static let stopGraceMilliseconds = 2000

    init(configuration: HTTPServerConfiguration,
         handler: @escaping @Sendable (HTTPRequest, HTTPClientConnection) -> HTTPResponse) {
        self.configuration = configuration
        self.handler = handler
        self.pool = HTTPWorkerPool(maxWorkers: configuration.maxConcurrentRequests,
                                   maxPerClient: configuration.maxConcurrentRequestsPerClient)
    }

    var openConnections: Int { open.load(ordering: .relaxed) }

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
            switch PThread.spawn(name: "pprof-http", joinable: true, { [self] in
                HTTPEventLoop(core: self, listener: listenFD, wakeReader: wakeReader, isUnix: isUnix).run()
            }) {
            case let .success(thread):
                state.phase = .running(Running(listener: listener, wakeReader: wake[0],
                                               wakeWriter: wake[1], loopThread: thread))
                pool.startWaitingThread()
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

        Self.wake(running.wakeWriter)
        PThread.join(running.loopThread)
        running.listener.close()
        SocketIO.closeDescriptor(running.wakeReader)
        SocketIO.closeDescriptor(running.wakeWriter)
        for job in pool.stop() {
            guard let connection = job.connection else { continue }
            connection.shutdownForStop()
            closed(connection)
        }
        let deadline = Deadline.now().adding(milliseconds: Self.stopGraceMilliseconds)
        while openConnections > 0 && !deadline.hasPassed {
            usleep(5_000)
        }
    }

    // MARK: Between the event loop and the workers

    /// Event loop: a connection was accepted.
    func opened() {
        open.add(1, ordering: .relaxed)
    }

    /// Closes a connection's socket; called once per connection, by the
    /// event loop, or by a worker once the server stopped.
    func closed(_ connection: HTTPClientConnection) {
        connection.close()
        open.subtract(1, ordering: .relaxed)
    }

    /// `HTTPServer.runOnWorker`.
    func runOnWorker(_ body: @escaping @Sendable () -> Void) -> Bool {
        pool.run(body)
    }

    /// Event loop: hands a request to the pool. False when no worker thread
    /// could be started.
    func dispatch(_ request: HTTPRequest, from connection: HTTPConnection) -> Bool {
        let id = connection.id
        let client = connection.client
        let job = HTTPWorkerPool.Job(id: id, client: connection.peer, connection: client) { [self] in
            complete(id, handler(request, client), client)
        }
        return pool.submit(job)
    }

    /// Event loop, woken: the responses ready since last time; nil once stopping.
    func takeCompletions() -> [(Int, HTTPResponse)]? {
        state.withLock { state in
            guard case .running = state.phase else { return nil }
            defer { state.completions = [] }
            return state.completions
        }
    }

    /// Event loop, stopping: the connections whose responses it will never
    /// write (their workers are done, so nobody else closes them).
    func takeUndelivered() -> Set<Int> {
        state.withLock { state in
            defer { state.completions = [] }
            return Set(state.completions.map(\.0))
        }
    }

    /// Worker: a handler's answer, for the event loop to write. The wake-up
    /// is sent under the lock: `stop()` closes the wake socket only after
    /// leaving `.running`, so the descriptor cannot be someone else's by then.
    private func complete(_ id: Int, _ response: HTTPResponse, _ connection: HTTPClientConnection) {
        let queued: Bool = state.withLock { state in
            guard case let .running(running) = state.phase else { return false }
            state.completions.append((id, response))
            Self.wake(running.wakeWriter)
            return true
        }
        if !queued {
            closed(connection)  // stopped meanwhile: the event loop is gone
        }
    }

    private static func wake(_ fd: Int32) {
        var byte: UInt8 = 1
        var sent: Int
        repeat { sent = send(fd, &byte, 1, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) } while sent < 0 && errno == EINTR
        // EAGAIN: the socket is full of wake-ups already.
    }
}

extension SymbolPreload {
    /// An address in this file's compile unit, for the read-ahead
    /// (`requestPathAddresses`). Returns its own number: identical
    /// functions could be merged into one.
    static let httpServerUnit: @convention(c) () -> Int = { 2 }
}
