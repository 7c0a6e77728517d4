import Glibc

@testable import Pprof

/// A deliberately small HTTP/1.1 client for tests: one request per
/// connection (`Connection: close`), the whole response read until EOF.
struct RawHTTPResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
    var text: String { String(decoding: body, as: UTF8.self) }
}

enum RawHTTPClient {
    struct Failure: Error, CustomStringConvertible { var description: String }

    static func request(port: Int, method: String = "GET", target: String, body: [UInt8] = [],
                        extraHeaders: [String] = [], host: String = "127.0.0.1") throws -> RawHTTPResponse {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n"
        for h in extraHeaders { head += h + "\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        let raw = try exchange(port: port, bytes: Array(head.utf8) + body, host: host)
        return try parse(raw, method: method)
    }

    /// Sends bytes as they are and returns everything the server sends back.
    static func exchange(port: Int, bytes: [UInt8], host: String = "127.0.0.1") throws -> [UInt8] {
        let fd = try connect(port: port, host: host)
        defer { close(fd) }
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw Failure(description: "send failed: errno \(errno)") }
            sent += n
        }
        return readAll(fd)
    }

    static func connect(port: Int, host: String = "127.0.0.1") throws -> Int32 {
        let (fd, code) = RawClient.connect(.tcp(host: host, port: port))
        guard fd >= 0 else { throw Failure(description: "connect to \(host):\(port) failed: errno \(code)") }
        var tv = timeval(tv_sec: 120, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func readAll(_ fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    static func parse(_ raw: [UInt8], method: String = "GET") throws -> RawHTTPResponse {
        guard let end = raw.firstRange(of: Array("\r\n\r\n".utf8)) else {
            throw Failure(description: "no header end in \(raw.count) bytes")
        }
        let head = String(decoding: raw[..<end.lowerBound], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw Failure(description: "bad status line") }
        let headers = lines.compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters())
        }
        var body = Array(raw[end.upperBound...])
        if let length = headers.first(where: { $0.0.lowercased() == "content-length" }).flatMap({ Int($0.1) }),
           method != "HEAD", body.count > length {
            body = Array(body.prefix(length))
        }
        return RawHTTPResponse(status: status, headers: headers, body: body)
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
