import Glibc

/// What a handler answers. The server adds Content-Length (from `body`),
/// Date and Connection; handler values for those three, and for
/// Transfer-Encoding, are ignored, except that `Connection: close` makes the
/// server close the connection after this response.
struct HTTPResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

extension HTTPResponse {
    /// A response the server makes itself: plain text, no sniffing, a short
    /// body ("404 Not Found\n") that reveals nothing internal.
    static func plainText(status: Int, _ text: String? = nil) -> HTTPResponse {
        let message = text ?? "\(status) \(reasonPhrase(for: status))"
        return HTTPResponse(
            status: status,
            headers: [("Content-Type", "text/plain; charset=utf-8"),
                      ("X-Content-Type-Options", "nosniff")],
            body: Array((message.hasSuffix("\n") ? message : message + "\n").utf8))
    }

    static func reasonPhrase(for status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 206: "Partial Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 303: "See Other"
        case 304: "Not Modified"
        case 307: "Temporary Redirect"
        case 308: "Permanent Redirect"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 406: "Not Acceptable"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 410: "Gone"
        case 411: "Length Required"
        case 412: "Precondition Failed"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 415: "Unsupported Media Type"
        case 416: "Range Not Satisfiable"
        case 417: "Expectation Failed"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: ""
        }
    }

    /// Whether the handler asked for the connection to be closed.
    var requestsClose: Bool {
        headers.contains { header in
            asciiCaseInsensitiveEqual(header.name, "Connection")
                && header.value.split(separator: ",").contains {
                    asciiCaseInsensitiveEqual($0.trimmingBlanks(), "close")
                }
        }
    }

    /// Whether a body (and so Content-Length) may be sent at all: not for
    /// 204 and 304 (RFC 9110 6.4.1, 8.6).
    var allowsBody: Bool { status != 204 && status != 304 }

    /// The status line and header section, through the blank line.
    /// Statuses outside 200...999 become 500 (a handler cannot send 1xx).
    func encodedHead(keepAlive: Bool, requestMinorVersion: Int, date: String? = httpDate()) -> [UInt8] {
        let code = (200...999).contains(status) ? status : 500
        var text = "HTTP/1.1 \(code) \(Self.reasonPhrase(for: code))\r\n"
        var handlerSetDate = false
        for (name, value) in headers where Self.isSendable(name: name, value: value) {
            if asciiCaseInsensitiveEqual(name, "Content-Length")
                || asciiCaseInsensitiveEqual(name, "Transfer-Encoding")
                || asciiCaseInsensitiveEqual(name, "Connection") {
                continue
            }
            if asciiCaseInsensitiveEqual(name, "Date") { handlerSetDate = true }
            text += "\(name): \(value)\r\n"
        }
        if !handlerSetDate, let date { text += "Date: \(date)\r\n" }
        if allowsBody {
            text += "Content-Length: \(body.count)\r\n"
        }
        if !keepAlive {
            text += "Connection: close\r\n"
        } else if requestMinorVersion == 0 {
            text += "Connection: keep-alive\r\n"
        }
        text += "\r\n"
        return Array(text.utf8)
    }

    /// Header fields that would corrupt the response (CR, LF, NUL, a bad
    /// name) are dropped rather than sent.
    private static func isSendable(name: String, value: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy(isTokenByte)
            && value.utf8.allSatisfy { ($0 >= 0x20 && $0 != 0x7F) || $0 == 0x09 }
    }
}

/// The current time as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT").
func httpDate(_ seconds: time_t = time(nil)) -> String {
    var t = seconds
    var parts = tm()
    guard gmtime_r(&t, &parts) != nil else { return "" }
    let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(days[Int(parts.tm_wday) % 7]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon) % 12]) "
        + "\(parts.tm_year + 1900) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
}
