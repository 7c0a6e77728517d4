import Glibc
import Synchronization

/// A tiny HTTP/1.1 front end for ``DemoAPI`` on plain POSIX sockets: one
/// thread accepts, each connection gets a thread of its own, one request per
/// connection. Enough for curl, wrk and a browser; not a production server.
enum HTTPFrontEnd {
    static let maxConnections = 64
    static let maxHeaderBytes = 64 << 10
    static let maxBodyBytes = 64 << 20
    private static let open = Atomic<Int>(0)

    enum StartError: Error, CustomStringConvertible {
        case badAddress(String)
        case system(String)

        var description: String {
            switch self {
            case .badAddress(let text): "expected HOST:PORT, got \"\(text)\""
            case .system(let text): text
            }
        }
    }

    /// Binds `HOST:PORT` (`[::1]:8080` for IPv6) and serves on a background thread.
    static func start(address text: String) throws(StartError) {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            throw .badAddress(text)
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }

        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let info = list else { throw .badAddress(text) }
        defer { freeaddrinfo(list) }

        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0, listen(fd, 128) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw .system("cannot listen on \(text): \(message)")
        }
        spawnThread("demo-http") { acceptLoop(fd) }
    }

    private static func acceptLoop(_ listener: Int32) {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                sleepBriefly(milliseconds: 100)   // EMFILE and friends: back off
                continue
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            guard open.add(1, ordering: .relaxed).newValue <= maxConnections else {
                open.subtract(1, ordering: .relaxed)
                send(fd, DemoAPI.Response.text("busy\n", status: 503))
                close(fd)
                continue
            }
            spawnThread("demo-http-conn") {
                serve(fd)
                close(fd)
                open.subtract(1, ordering: .relaxed)
            }
        }
    }

    private static func serve(_ fd: Int32) {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        var buffer: [UInt8] = []
        var headerEnd: Int?
        while headerEnd == nil {
            guard buffer.count < maxHeaderBytes, receive(fd, into: &buffer) else { return }
            headerEnd = find([13, 10, 13, 10], in: buffer)
        }
        let head = String(decoding: buffer[..<headerEnd!], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let requestLine = lines[0].split(separator: " ")
        guard requestLine.count == 3 else { return send(fd, .text("bad request\n", status: 400)) }
        let method = String(requestLine[0])
        let target = requestLine[1]
        let path = String(target.prefix { $0 != "?" })
        let query = target.firstIndex(of: "?").map { String(target[target.index(after: $0)...]) } ?? ""

        var contentLength = 0
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "content-length" {
                contentLength = Int(parts[1].trimmingPrefix(" ")) ?? -1
            }
        }
        guard (0...maxBodyBytes).contains(contentLength) else { return send(fd, .text("bad length\n", status: 413)) }
        var body = Array(buffer[(headerEnd! + 4)...])
        while body.count < contentLength {
            guard receive(fd, into: &body) else { return }
        }
        send(fd, DemoAPI.handle(method: method, path: path, query: query, body: Array(body.prefix(contentLength))))
    }

    /// Appends what the socket has; false at end of stream, on error or timeout.
    private static func receive(_ fd: Int32, into buffer: inout [UInt8]) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n > 0 { buffer.append(contentsOf: chunk[..<n]); return true }
            if n < 0 && errno == EINTR { continue }
            return false
        }
    }

    private static func send(_ fd: Int32, _ response: DemoAPI.Response) {
        let reason = [200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                      413: "Content Too Large", 503: "Service Unavailable"][response.status] ?? ""
        let head = "HTTP/1.1 \(response.status) \(reason)\r\nContent-Type: \(response.contentType)\r\n"
            + "Content-Length: \(response.body.count)\r\nConnection: close\r\n\r\n"
        var bytes = Array(head.utf8)
        bytes.append(contentsOf: response.body)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            sent += n
        }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if Array(haystack[i..<i + needle.count]) == needle { return i }
        }
        return nil
    }
}
