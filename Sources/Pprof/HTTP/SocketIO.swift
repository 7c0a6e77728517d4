import Glibc

/// A point on the monotonic clock after which an operation gives up.
struct Deadline: Sendable {
    var nanoseconds: UInt64

    static func now() -> Deadline {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Deadline(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    static func secondsFromNow(_ seconds: Int) -> Deadline {
        now().adding(milliseconds: max(0, seconds) * 1000)
    }

    func adding(milliseconds: Int) -> Deadline {
        Deadline(nanoseconds: nanoseconds &+ UInt64(max(0, milliseconds)) &* 1_000_000)
    }

    var hasPassed: Bool { Deadline.now().nanoseconds >= nanoseconds }

    /// Milliseconds left, rounded up, as a poll(2) timeout.
    var pollTimeout: Int32 {
        let now = Deadline.now().nanoseconds
        guard nanoseconds > now else { return 0 }
        let ms = (nanoseconds - now + 999_999) / 1_000_000
        return Int32(clamping: ms)
    }
}

/// Thin EINTR-safe wrappers over the socket calls the server makes. The
/// process takes SIGPROF constantly while profiling, so every blocking call
/// is restarted by hand, with deadlines on the monotonic clock.
enum SocketIO {
    /// POLLRDHUP (a _GNU_SOURCE macro Swift does not import); same value on
    /// every Linux architecture.
    static let pollReadHangUp: Int16 = 0x2000

    enum ReadResult: Equatable {
        case bytes(Int)
        case endOfStream
        case timedOut
        case failed
    }

    /// Waits until `fd` has something to read (data, EOF or an error).
    /// Returns false when the deadline passes first.
    static func waitReadable(_ fd: Int32, until deadline: Deadline) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let rc = poll(&entry, 1, deadline.pollTimeout)
            if rc > 0 { return true }
            if rc == 0 {
                if deadline.hasPassed { return false }
                continue
            }
            if errno == EINTR { continue }
            return true  // let the following recv report the error
        }
    }

    /// Reads what is available (at most `scratch.count` bytes) and appends
    /// it to `buffer`, waiting no later than `deadline`.
    static func receive(_ fd: Int32, appendingTo buffer: inout [UInt8],
                        scratch: inout [UInt8], until deadline: Deadline) -> ReadResult {
        while true {
            guard waitReadable(fd, until: deadline) else { return .timedOut }
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer.append(contentsOf: scratch[0..<n])
                return .bytes(n)
            }
            if n == 0 { return .endOfStream }
            switch errno {
            case EINTR, EAGAIN, EWOULDBLOCK: continue
            default: return .failed
            }
        }
    }

    /// Sends every byte, never raising SIGPIPE. Gives up (returns false) on
    /// an error or when no byte could be sent for `stallSeconds` (the socket
    /// has SO_SNDTIMEO set, which makes a blocked send return).
    static func sendAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, more: Bool = false,
                        stallSeconds: Int) -> Bool {
        guard var next = bytes.baseAddress else { return true }
        var remaining = bytes.count
        let flags = Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0)
        var stallDeadline = Deadline.secondsFromNow(stallSeconds)
        while remaining > 0 {
            let n = send(fd, next, remaining, flags)
            if n > 0 {
                next += n
                remaining -= n
                stallDeadline = Deadline.secondsFromNow(stallSeconds)
                continue
            }
            if n < 0 && errno == EINTR && !stallDeadline.hasPassed { continue }
            return false  // EAGAIN here means SO_SNDTIMEO expired
        }
        return true
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8], more: Bool = false, stallSeconds: Int) -> Bool {
        bytes.withUnsafeBytes { sendAll(fd, $0, more: more, stallSeconds: stallSeconds) }
    }

    /// Reads and drops whatever the peer still sends until it closes, at
    /// most `maxBytes` or until `deadline`. Used after shutdown(SHUT_WR) so
    /// that closing with unread input does not reset the connection (an RST
    /// can destroy the response before the client has read it).
    static func drain(_ fd: Int32, maxBytes: Int, until deadline: Deadline) {
        var scratch = [UInt8](repeating: 0, count: 16 << 10)
        var total = 0
        while total < maxBytes {
            guard waitReadable(fd, until: deadline) else { return }
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { total += n; continue }
            if n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) { continue }
            return
        }
    }

    /// Drains without blocking; returns false once the peer closed or failed.
    static func drainNonBlocking(_ fd: Int32) -> Bool {
        var scratch = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<64 {
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { continue }
            if n == 0 { return false }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return true
            default: return false
            }
        }
        return true
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    static func setCloseOnExec(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }

    static func setIntOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var v = value
        _ = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    static func setSendTimeout(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: max(1, seconds), tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// close(2) without a retry on EINTR: on Linux the descriptor is gone
    /// whatever close returns, and retrying could close someone else's.
    static func closeDescriptor(_ fd: Int32) {
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }

    typealias Accept4 = @convention(c) (Int32, UnsafeMutablePointer<sockaddr>?,
                                        UnsafeMutablePointer<socklen_t>?, Int32) -> Int32

    /// glibc's accept4, which Swift's Glibc module hides behind _GNU_SOURCE.
    private static let accept4Function: Accept4? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "accept4") else { return nil }
        return unsafeBitCast(symbol, to: Accept4.self)
    }()

    /// accept(2) with the new descriptor close-on-exec (atomically where
    /// accept4 exists). Returns -1 with errno set on failure.
    static func acceptCloseOnExec(_ fd: Int32) -> Int32 {
        if let accept4 = accept4Function {
            return accept4(fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        }
        let client = accept(fd, nil, nil)
        if client >= 0 { setCloseOnExec(client) }
        return client
    }
}
