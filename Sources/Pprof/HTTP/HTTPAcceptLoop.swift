import Glibc

/// The accept thread: waits on the listener and the wake socket, starts a
/// thread per admitted connection, and answers 503 to connections over the
/// limit. Rejected sockets are half-closed and drained here (polled with
/// the listener) before being closed, so that the 503 is not lost to a reset.
struct HTTPAcceptLoop {
    let core: HTTPServerCore
    let listener: Int32
    let wakeReader: Int32
    let isUnix: Bool

    private struct Rejected {
        let descriptor: Int32
        let deadline: Deadline
    }

    /// Rejected sockets lingering at once; the oldest is closed beyond this.
    static let maxRejected = 64
    static let rejectLingerMilliseconds = 2000

    func run() {
        var rejected: [Rejected] = []
        var backoffMilliseconds = 0
        var backoffUntil: Deadline?
        defer {
            for socket in rejected { SocketIO.closeDescriptor(socket.descriptor) }
        }
        while true {
            let pausing = backoffUntil.map { !$0.hasPassed } ?? false
            var entries = [pollfd(fd: wakeReader, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: pausing ? -1 : listener, events: Int16(POLLIN), revents: 0)]
            entries += rejected.map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) }
            var nearest = rejected.map(\.deadline.nanoseconds).min()
            if pausing, let until = backoffUntil?.nanoseconds { nearest = min(nearest ?? until, until) }
            let timeout = nearest.map { Deadline(nanoseconds: $0).pollTimeout } ?? -1

            let rc = poll(&entries, nfds_t(entries.count), timeout)
            if rc < 0 {
                if errno != EINTR { usleep(10_000) }
                continue
            }
            if entries[0].revents != 0 { return }

            // Rejected sockets: drop what they send; close on EOF or deadline.
            var kept: [Rejected] = []
            for (index, socket) in rejected.enumerated() {
                let readable = entries[index + 2].revents != 0
                if (readable && !SocketIO.drainNonBlocking(socket.descriptor)) || socket.deadline.hasPassed {
                    SocketIO.closeDescriptor(socket.descriptor)
                } else {
                    kept.append(socket)
                }
            }
            rejected = kept

            guard entries[1].revents != 0 else { continue }
            // Accept what is pending (the listener is non-blocking).
            for _ in 0..<64 {
                let fd = SocketIO.acceptCloseOnExec(listener)
                if fd < 0 {
                    switch errno {
                    case EINTR, ECONNABORTED, EPROTO: continue
                    case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                        // Out of descriptors or memory: pause accepting, as Go does.
                        backoffMilliseconds = min(max(5, backoffMilliseconds * 2), 1000)
                        backoffUntil = Deadline.now().adding(milliseconds: backoffMilliseconds)
                    default:
                        break  // EAGAIN: nothing more pending
                    }
                    break
                }
                backoffMilliseconds = 0
                if !serve(fd) {
                    reject(fd, into: &rejected)
                }
            }
        }
    }

    /// Starts a connection thread; false when over the limit or out of threads.
    private func serve(_ fd: Int32) -> Bool {
        let connection = HTTPClientConnection(descriptor: fd, isUnixSocket: isUnix)
        guard core.admit(connection) else { return false }
        let core = self.core
        let spawned = PThread.spawn(name: "pprof-conn", joinable: false) {
            HTTPConnection(client: connection, configuration: core.configuration, handler: core.handler).run()
            core.release(connection)
        }
        if case .failure = spawned {
            core.release(connection)
            return false
        }
        return true
    }

    /// Answers 503 without reading the request, half-closes, and keeps the
    /// socket to drain until the client closes. The answer has no body: the
    /// request is not read, it may be a HEAD, and a body would then be read
    /// as the start of the next response.
    static let overLimitResponse = HTTPResponse(status: 503, headers: [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("X-Content-Type-Options", "nosniff"),
        ("Retry-After", "1"),
    ])

    private func reject(_ fd: Int32, into rejected: inout [Rejected]) {
        let response = Self.overLimitResponse
        var bytes = response.encodedHead(keepAlive: false, requestMinorVersion: 1)
        bytes += response.body
        var sent: Int
        repeat {
            sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
        } while sent < 0 && errno == EINTR
        _ = shutdown(fd, Int32(SHUT_WR))
        SocketIO.setNonBlocking(fd)
        if rejected.count >= Self.maxRejected {
            SocketIO.closeDescriptor(rejected.removeFirst().descriptor)
        }
        rejected.append(Rejected(descriptor: fd,
                                 deadline: Deadline.now().adding(milliseconds: Self.rejectLingerMilliseconds)))
    }
}
