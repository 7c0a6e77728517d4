import Glibc

/// A bound, listening socket.
struct HTTPListener: Sendable {
    let descriptor: Int32
    /// The address actually bound: numeric host, real port.
    let boundAddress: ListenAddress
    /// For a Unix socket: the file we created, to remove it on close only if
    /// it is still ours.
    private let socketFile: SocketFile?

    private struct SocketFile: Sendable {
        let path: String
        let device: UInt64
        let inode: UInt64
    }

    static let backlog: Int32 = 128

    /// Creates the socket (close-on-exec, non-blocking), binds and listens.
    static func open(_ address: ListenAddress) throws(HTTPServerError) -> HTTPListener {
        switch address {
        case let .tcp(host, port): try openTCP(host: host, port: port, display: address.description)
        case let .unix(path): try openUnix(path: path)
        }
    }

    /// Closes the socket and removes the Unix socket file we created.
    func close() {
        SocketIO.closeDescriptor(descriptor)
        if let file = socketFile, let identity = Self.fileIdentity(file.path), identity.isSocket,
           identity.device == file.device, identity.inode == file.inode {
            _ = unlink(file.path)
        }
    }

    // MARK: TCP

    private static func openTCP(host: String, port: Int, display: String) throws(HTTPServerError) -> HTTPListener {
        guard (0...65535).contains(port) else { throw .invalidAddress(display) }
        var numericHost = host
        if numericHost.hasPrefix("[") && numericHost.hasSuffix("]") && numericHost.count >= 2 {
            numericHost = String(numericHost.dropFirst().dropLast())
        }
        if numericHost == "localhost" { numericHost = "127.0.0.1" }
        guard !numericHost.isEmpty, !numericHost.utf8.contains(0) else { throw .invalidAddress(display) }

        var hints = addrinfo()
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(numericHost, String(port), &hints, &list) == 0, let info = list else {
            throw .invalidAddress(display)
        }
        defer { freeaddrinfo(list) }

        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system("socket: \(SocketIO.errorText(errno))") }
        SocketIO.setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        if bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) != 0 {
            let code = errno
            SocketIO.closeDescriptor(fd)
            throw bindError(code, call: "bind", display: display)
        }
        if listen(fd, backlog) != 0 {
            let code = errno
            SocketIO.closeDescriptor(fd)
            throw bindError(code, call: "listen", display: display)
        }
        SocketIO.setNonBlocking(fd)

        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var hostBuffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var serviceBuffer = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let named = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                getsockname(fd, address, &length) == 0
                    && getnameinfo(address, length, &hostBuffer, socklen_t(hostBuffer.count),
                                   &serviceBuffer, socklen_t(serviceBuffer.count),
                                   NI_NUMERICHOST | NI_NUMERICSERV) == 0
            }
        }
        guard named, let boundPort = Int(cString(serviceBuffer)) else {
            SocketIO.closeDescriptor(fd)
            throw .system("getsockname: \(SocketIO.errorText(errno))")
        }
        return HTTPListener(descriptor: fd,
                            boundAddress: .tcp(host: cString(hostBuffer), port: boundPort),
                            socketFile: nil)
    }

    private static func cString(_ buffer: [CChar]) -> String {
        buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    private static func bindError(_ code: Int32, call: String, display: String) -> HTTPServerError {
        switch code {
        case EADDRINUSE: .addressInUse(display)
        case EACCES, EPERM: .permissionDenied(display)
        case EADDRNOTAVAIL, EAFNOSUPPORT, EINVAL: .invalidAddress(display)
        default: .system("\(call) \(display): \(SocketIO.errorText(code))")
        }
    }

    // MARK: Unix

    private static func openUnix(path: String) throws(HTTPServerError) -> HTTPListener {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !pathBytes.isEmpty, pathBytes.count < capacity, !pathBytes.contains(0) else {
            throw .invalidAddress(path)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + pathBytes.count + 1)

        try removeStaleSocket(path: path, address: address, length: length)

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system("socket: \(SocketIO.errorText(errno))") }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        if bound != 0 {
            let code = errno
            SocketIO.closeDescriptor(fd)
            throw bindError(code, call: "bind", display: path)
        }
        // Before listen(): nobody can connect while the mode is still the umask's.
        guard chmod(path, 0o600) == 0, let identity = fileIdentity(path) else {
            let code = errno
            SocketIO.closeDescriptor(fd)
            _ = unlink(path)
            throw .system("chmod \(path): \(SocketIO.errorText(code))")
        }
        if listen(fd, backlog) != 0 {
            let code = errno
            SocketIO.closeDescriptor(fd)
            _ = unlink(path)
            throw bindError(code, call: "listen", display: path)
        }
        SocketIO.setNonBlocking(fd)
        return HTTPListener(descriptor: fd, boundAddress: .unix(path: path),
                            socketFile: SocketFile(path: path, device: identity.device, inode: identity.inode))
    }

    /// A socket file left by a process that died is removed; a live one (it
    /// accepts a connection) is `.addressInUse`; anything but a socket is
    /// left alone for bind to refuse.
    private static func removeStaleSocket(path: String, address: sockaddr_un,
                                          length: socklen_t) throws(HTTPServerError) {
        guard let identity = fileIdentity(path), identity.isSocket else { return }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
                               | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard probe >= 0 else { throw .system("socket: \(SocketIO.errorText(errno))") }
        var target = address
        let rc = withUnsafePointer(to: &target) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, length) }
        }
        let code = errno
        SocketIO.closeDescriptor(probe)
        if rc == 0 || code == EAGAIN || code == EINPROGRESS { throw .addressInUse(path) }
        if code == EACCES || code == EPERM { throw .permissionDenied(path) }
        if code == ECONNREFUSED { _ = unlink(path) }
    }

    private struct FileIdentity {
        let isSocket: Bool
        let device: UInt64
        let inode: UInt64
    }

    private static func fileIdentity(_ path: String) -> FileIdentity? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return FileIdentity(isSocket: info.st_mode & S_IFMT == S_IFSOCK,
                            device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }
}
