import Glibc

/// The server's one I/O thread: polls the listener, the wake socket and
/// every connection, accepts, reads and parses heads and bodies, writes
/// responses and enforces deadlines. Handlers run on the worker pool; their
/// answers come back through the core, which wakes this thread.
///
/// Why one thread: an idle or slow connection then costs a descriptor and
/// a few hundred bytes, never a thread, so no number of quiet or dripping
/// clients can take the server's capacity (one thread per connection could
/// be locked out by 16 silent sockets). Nothing here blocks: sockets are
/// non-blocking and every wait is the poll(2) at the top of the loop.
struct HTTPEventLoop {
    let core: HTTPServerCore
    let listener: Int32
    let wakeReader: Int32
    let isUnix: Bool

    /// Refused connections (answered 503, lingering) allowed beyond the limit.
    static let maxRefused = 64

    /// Over the limit with every connection busy: 503 without reading the
    /// request. No body: the request may be a HEAD, and a body would then be
    /// read as the start of the next response.
    static let overLimitResponse = HTTPResponse(status: 503, headers: [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("X-Content-Type-Options", "nosniff"),
        ("Retry-After", "1"),
    ])

    private final class State {
        var connections: [Int: HTTPConnection] = [:]
        var nextID = 0
        var backoffMilliseconds = 0
        var backoffUntil: Deadline?
        var scratch = [UInt8](repeating: 0, count: 64 << 10)
    }

    func run() {
        let state = State()
        defer { shutDown(state) }
        var entries: [pollfd] = []
        var polled: [HTTPConnection] = []
        while true {
            let pausing = state.backoffUntil.map { !$0.hasPassed } ?? false
            entries.removeAll(keepingCapacity: true)
            polled.removeAll(keepingCapacity: true)
            entries.append(pollfd(fd: wakeReader, events: Int16(POLLIN), revents: 0))
            entries.append(pollfd(fd: pausing ? -1 : listener, events: Int16(POLLIN), revents: 0))
            var nearest = pausing ? state.backoffUntil?.nanoseconds : nil
            for connection in state.connections.values {
                let events = connection.pollEvents
                guard events != 0 else { continue }
                entries.append(pollfd(fd: connection.client.descriptor, events: events, revents: 0))
                polled.append(connection)
                nearest = min(nearest ?? .max, connection.deadline.nanoseconds)
            }
            let timeout = nearest.map { Deadline(nanoseconds: $0).pollTimeout } ?? -1

            let rc = poll(&entries, nfds_t(entries.count), timeout)
            if rc < 0 {
                if errno != EINTR { usleep(10_000) }
                continue
            }
            if entries[0].revents != 0 {
                _ = SocketIO.drainNonBlocking(wakeReader)
                guard let completions = core.takeCompletions() else { return }
                for (id, response) in completions {
                    if let connection = state.connections[id] { perform(connection.deliver(response), connection, state) }
                }
            }
            for (index, connection) in polled.enumerated() {
                let revents = entries[index + 2].revents
                guard revents != 0, state.connections[connection.id] === connection else { continue }
                if revents & Int16(POLLNVAL) != 0 {
                    close(connection, state)
                    continue
                }
                let wanted = entries[index + 2].events
                let failed = revents & (Int16(POLLERR) | Int16(POLLHUP)) != 0
                if wanted & Int16(POLLOUT) != 0 && (revents & Int16(POLLOUT) != 0 || failed) {
                    perform(connection.writable(), connection, state)
                }
                if wanted & Int16(POLLIN) != 0 && (revents & Int16(POLLIN) != 0 || failed),
                   state.connections[connection.id] === connection, connection.pollEvents & Int16(POLLIN) != 0 {
                    perform(connection.readable(scratch: &state.scratch), connection, state)
                }
            }
            let now = Deadline.now().nanoseconds
            for connection in polled where state.connections[connection.id] === connection
                && connection.pollEvents != 0 && connection.deadline.nanoseconds <= now {
                perform(connection.expire(), connection, state)
            }
            if entries[1].revents != 0 { acceptPending(state) }
        }
    }

    private func perform(_ step: HTTPConnection.Step, _ connection: HTTPConnection, _ state: State) {
        switch step {
        case .wait:
            return
        case .close:
            close(connection, state)
        case let .dispatch(request):
            if !core.dispatch(request, from: connection) {
                let refused = HTTPResponse.plainText(status: 503, "pprof: no thread available for this request")
                perform(connection.deliver(refused), connection, state)
            }
        }
    }

    private func close(_ connection: HTTPConnection, _ state: State) {
        state.connections[connection.id] = nil
        core.closed(connection.client)
    }

    // MARK: Accepting

    private func acceptPending(_ state: State) {
        for _ in 0..<64 {
            let fd = SocketIO.acceptNonBlocking(listener)
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED, EPROTO: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: pause accepting, as Go does.
                    state.backoffMilliseconds = min(max(5, state.backoffMilliseconds * 2), 1000)
                    state.backoffUntil = Deadline.now().adding(milliseconds: state.backoffMilliseconds)
                default:
                    break  // EAGAIN: nothing more pending
                }
                return
            }
            state.backoffMilliseconds = 0
            admit(fd, state)
        }
    }

    /// Makes room by closing the connection idle the longest if needed;
    /// refuses with 503 when every connection has a request in progress.
    private func admit(_ fd: Int32, _ state: State) {
        let client = HTTPClientConnection(descriptor: fd, isUnixSocket: isUnix)
        let limit = max(1, core.configuration.maxConnections)
        if state.connections.count >= limit,
           let victim = state.connections.values.filter(\.isEvictable).min(by: { $0.idleSince.nanoseconds < $1.idleSince.nanoseconds }) {
            close(victim, state)
        }
        state.nextID += 1
        let connection: HTTPConnection
        if state.connections.count < limit {
            if !isUnix { SocketIO.setIntOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1) }
            connection = HTTPConnection(id: state.nextID, client: client, peer: isUnix ? "unix" : SocketIO.peerAddress(fd),
                                        configuration: core.configuration)
        } else if state.connections.count < limit + Self.maxRefused {
            connection = HTTPConnection(id: state.nextID, refusing: client, with: Self.overLimitResponse,
                                        configuration: core.configuration)
        } else {
            client.close()
            return
        }
        state.connections[connection.id] = connection
        core.opened()
        if case .writing = connection.phase { perform(connection.writable(), connection, state) }
    }

    // MARK: Stopping

    /// Closes every connection; one whose request is with a worker is shut
    /// down instead (its handler sees `isPeerGone()`), and closed by the core
    /// when the worker is done.
    private func shutDown(_ state: State) {
        let undelivered = core.takeUndelivered()
        for connection in state.connections.values {
            if case .processing = connection.phase, !undelivered.contains(connection.id) {
                connection.client.shutdownForStop()
            } else {
                core.closed(connection.client)
            }
        }
        state.connections.removeAll()
    }
}
