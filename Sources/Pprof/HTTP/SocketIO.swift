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
/// process takes SIGPROF constantly while profiling, so every call is
/// restarted by hand after EINTR.
enum SocketIO {
    /// POLLRDHUP (a _GNU_SOURCE macro Swift does not import); same value on
    /// every Linux architecture.
    static let pollReadHangUp: Int16 = 0x2000

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
    /// accept4 exists), plus `extraFlags` of accept4. Returns -1 with errno
    /// set on failure.
    private static func acceptCloseOnExec(_ fd: Int32, extraFlags: Int32) -> Int32 {
        if let accept4 = accept4Function {
            return accept4(fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue) | extraFlags)
        }
        let client = accept(fd, nil, nil)
        if client >= 0 { setCloseOnExec(client) }
        return client
    }
}

extension SocketIO {
    /// accept(2) of a non-blocking, close-on-exec socket (atomically where
    /// accept4 exists). Returns -1 with errno set on failure.
    static func acceptNonBlocking(_ fd: Int32) -> Int32 {
        let client = acceptCloseOnExec(fd, extraFlags: Int32(SOCK_NONBLOCK.rawValue))
        if client >= 0 { setNonBlocking(client) }
        return client
    }

    /// The numeric address of a connected socket's peer ("127.0.0.1", "::1"),
    /// without the port; "" if unknown.
    static func peerAddress(_ fd: Int32) -> String {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let named = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                getpeername(fd, address, &length) == 0
                    && getnameinfo(address, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0
            }
        }
        guard named else { return "" }
        return host.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
