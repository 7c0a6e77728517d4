import Glibc
import Synchronization

/// The client side of one connection, as a handler sees it: lets a
/// long-running handler (a 30 s CPU profile) notice that its client went
/// away or that the server is stopping, and give up early.
final class HTTPClientConnection: Sendable {
    /// The connected socket; -1 for a connection not backed by a socket.
    let descriptor: Int32
    let isUnixSocket: Bool
    private let state = Mutex(State())

    private struct State {
        var closed = false
        var stopping = false
    }

    init(descriptor: Int32, isUnixSocket: Bool) {
        self.descriptor = descriptor
        self.isUnixSocket = isUnixSocket
    }

    /// A connection with no socket behind it, for calling handlers directly
    /// (tests): `isPeerGone()` stays false until `shutdownForStop()`.
    convenience init() {
        self.init(descriptor: -1, isUnixSocket: false)
    }

    /// True once the peer closed or reset the connection (POLLRDHUP, POLLHUP,
    /// POLLERR, or a zero-byte MSG_PEEK read), or the server is stopping.
    /// Never blocks. A peer that pipelined another request is not gone.
    func isPeerGone() -> Bool {
        state.withLock { state in
            if state.closed || state.stopping { return true }
            if descriptor < 0 { return false }
            let gone = Int16(POLLHUP) | Int16(POLLERR) | Int16(POLLNVAL) | SocketIO.pollReadHangUp
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN) | SocketIO.pollReadHangUp, revents: 0)
            var rc: Int32
            repeat { rc = poll(&entry, 1, 0) } while rc < 0 && errno == EINTR
            if rc <= 0 { return false }
            if entry.revents & gone != 0 { return true }
            var byte: UInt8 = 0
            var n: Int
            repeat {
                n = recv(descriptor, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
            } while n < 0 && errno == EINTR
            if n == 0 { return true }
            return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK
        }
    }

    /// True once `shutdownForStop()` ran: finish the current response, then close.
    var isStopping: Bool {
        state.withLock { $0.stopping }
    }

    /// Wakes the connection's thread out of any read or write by shutting
    /// the socket down both ways (the descriptor stays valid until `close()`).
    func shutdownForStop() {
        state.withLock { state in
            state.stopping = true
            if !state.closed && descriptor >= 0 {
                _ = shutdown(descriptor, Int32(SHUT_RDWR))
            }
        }
    }

    /// Closes the socket. Done under the lock so that `isPeerGone()` and
    /// `shutdownForStop()` never touch a descriptor number reused by someone else.
    func close() {
        state.withLock { state in
            guard !state.closed else { return }
            state.closed = true
            SocketIO.closeDescriptor(descriptor)
        }
    }
}
