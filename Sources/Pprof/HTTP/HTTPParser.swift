/// Why a request is refused before it reaches the handler. Each case maps
/// to the status the server answers with before closing the connection.
enum HTTPParseError: Error, Equatable {
    case badRequest
    case uriTooLong
    case headerFieldsTooLarge
    case payloadTooLarge
    /// A Transfer-Encoding other than chunked.
    case notImplemented
    case versionNotSupported

    var status: Int {
        switch self {
        case .badRequest: 400
        case .uriTooLong: 414
        case .headerFieldsTooLarge: 431
        case .payloadTooLarge: 413
        case .notImplemented: 501
        case .versionNotSupported: 505
        }
    }
}

/// The request line and header fields of one request, checked.
struct HTTPRequestHead: Sendable {
    var method: String
    var target: String
    var path: String
    var rawQuery: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    var minorVersion: Int
    var headers: [(name: String, value: String)]
    var contentLength: Int
    /// "Transfer-Encoding: chunked": the body comes in chunks.
    var chunked: Bool = false
    /// Whether the connection may serve another request after this one.
    var keepAlive: Bool
    /// "Expect: 100-continue" on an HTTP/1.1 request.
    var expectsContinue: Bool
}

/// Finds the end of a request head incrementally, enforcing the size limits
/// while bytes trickle in, so that a slow client costs no rescanning and an
/// oversized head is refused as soon as it crosses a limit.
struct HTTPHeadScanner {
    let maxRequestLineBytes: Int
    let maxHeaderBytes: Int
    let maxHeaderCount: Int
    /// Blank lines before the request line are skipped (RFC 9112 2.2), up to this many bytes.
    static let maxLeadingBlankBytes = 64

    private var position = 0
    private var lineStart = 0
    private var requestStart = 0
    private var requestLineEnd = -1
    private var headerLines = 0
    private var sawMethodEnd = false

    init(maxRequestLineBytes: Int, maxHeaderBytes: Int, maxHeaderCount: Int) {
        self.maxRequestLineBytes = maxRequestLineBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
    }

    /// Starts over for a buffer whose consumed prefix was removed.
    mutating func reset() {
        position = 0
        lineStart = 0
        requestStart = 0
        requestLineEnd = -1
        headerLines = 0
        sawMethodEnd = false
    }

    /// Whether any byte of a request (not just blank lines) has arrived.
    var sawRequestBytes: Bool { position > requestStart }

    /// Looks at the bytes appended since the last call. Returns the range of
    /// the head, request line through the blank line, once it is complete.
    mutating func scan(_ buffer: [UInt8]) throws(HTTPParseError) -> Range<Int>? {
        let lf = UInt8(ascii: "\n")
        while position < buffer.count {
            let byte = buffer[position]
            if requestLineEnd < 0 {
                if byte == lf {
                    let end = lineEnd(buffer, lf: position)
                    if end == lineStart {
                        guard position + 1 <= Self.maxLeadingBlankBytes else { throw .badRequest }
                        requestStart = position + 1
                    } else {
                        guard end - lineStart <= maxRequestLineBytes else { throw .uriTooLong }
                        // Not "METHOD TARGET HTTP/x.y" (HTTP/0.9, binary): refused now,
                        // not after waiting for header lines that will never come.
                        guard Self.endsWithVersion(buffer[lineStart..<end]) else { throw .badRequest }
                        requestLineEnd = position + 1
                    }
                    lineStart = position + 1
                } else if position - lineStart > maxRequestLineBytes {
                    throw .uriTooLong  // one byte is allowed past the limit: the CR
                } else if !sawMethodEnd {
                    // The method is a token: any other byte before the first space
                    // means this is not HTTP at all.
                    if byte == UInt8(ascii: " ") {
                        guard position > lineStart else { throw .badRequest }
                        sawMethodEnd = true
                    } else if !isTokenByte(byte) && byte != UInt8(ascii: "\r") {
                        throw .badRequest
                    }
                }
            } else {
                let headerBytes = position + 1 - requestLineEnd
                if byte == lf {
                    if lineEnd(buffer, lf: position) == lineStart {
                        position += 1
                        return requestStart..<position
                    }
                    headerLines += 1
                    guard headerLines <= maxHeaderCount, headerBytes <= maxHeaderBytes else {
                        throw .headerFieldsTooLarge
                    }
                    lineStart = position + 1
                } else if headerBytes > maxHeaderBytes + 1 {
                    throw .headerFieldsTooLarge  // + 1: the CR of the final blank line
                }
            }
            position += 1
        }
        return nil
    }

    /// Whether a request line ends in " HTTP/" digit "." digit.
    private static func endsWithVersion(_ line: ArraySlice<UInt8>) -> Bool {
        let suffix = line.suffix(9)
        guard suffix.count == 9 else { return false }
        let bytes = Array(suffix)
        return bytes[0] == UInt8(ascii: " ") && Array(bytes[1...5]) == Array("HTTP/".utf8)
            && isDigit(bytes[6]) && bytes[7] == UInt8(ascii: ".") && isDigit(bytes[8])
    }

    /// The end of the line whose LF is at `lf`, without a CR before it.
    private func lineEnd(_ buffer: [UInt8], lf: Int) -> Int {
        (lf > lineStart && buffer[lf - 1] == UInt8(ascii: "\r")) ? lf - 1 : lf
    }
}

/// Parses a complete request head (as delimited by `HTTPHeadScanner`).
enum HTTPRequestParser {
    static func parseHead(_ bytes: ArraySlice<UInt8>) throws(HTTPParseError) -> HTTPRequestHead {
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = bytes.startIndex
        for index in bytes.indices where bytes[index] == UInt8(ascii: "\n") {
            var end = index
            if end > lineStart && bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            if end > lineStart { lines.append(bytes[lineStart..<end]) }
            lineStart = index + 1
        }
        guard let requestLine = lines.first else { throw .badRequest }
        var head = try parseRequestLine(requestLine)

        var contentLength: Int?
        var transferCodings: [Substring] = []
        var closeRequested = false
        var keepAliveRequested = false
        for line in lines.dropFirst() {
            let (name, value) = try parseHeaderLine(line)
            head.headers.append((name: name, value: value))
            if asciiCaseInsensitiveEqual(name, "Content-Length") {
                guard let length = parseContentLength(value),
                      contentLength == nil || contentLength == length else { throw .badRequest }
                contentLength = length
            } else if asciiCaseInsensitiveEqual(name, "Transfer-Encoding") {
                transferCodings += value.split(separator: ",").map { $0.trimmingBlanks() }
            } else if asciiCaseInsensitiveEqual(name, "Connection") {
                for token in value.split(separator: ",") {
                    let trimmed = token.trimmingBlanks()
                    if asciiCaseInsensitiveEqual(trimmed, "close") { closeRequested = true }
                    if asciiCaseInsensitiveEqual(trimmed, "keep-alive") { keepAliveRequested = true }
                }
            } else if asciiCaseInsensitiveEqual(name, "Expect") {
                head.expectsContinue = head.minorVersion == 1
                    && asciiCaseInsensitiveEqual(value, "100-continue")
            }
        }
        if !transferCodings.isEmpty {
            // Both framings at once is how requests are smuggled (RFC 9112 6.1): refused.
            guard contentLength == nil, head.minorVersion == 1 else { throw .badRequest }
            guard transferCodings.count == 1, asciiCaseInsensitiveEqual(transferCodings[0], "chunked") else {
                throw .notImplemented
            }
            head.chunked = true
        }
        head.contentLength = contentLength ?? 0
        head.keepAlive = !closeRequested && (head.minorVersion == 1 || keepAliveRequested)
        return head
    }

    private static func parseRequestLine(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> HTTPRequestHead {
        let space = UInt8(ascii: " ")
        guard let firstSpace = line.firstIndex(of: space) else { throw .badRequest }
        let afterMethod = line[(firstSpace + 1)...]
        guard let secondSpace = afterMethod.firstIndex(of: space) else { throw .badRequest }
        let methodBytes = line[..<firstSpace]
        let targetBytes = afterMethod[..<secondSpace]
        let versionBytes = afterMethod[(secondSpace + 1)...]

        guard !methodBytes.isEmpty, methodBytes.allSatisfy(isTokenByte) else { throw .badRequest }
        guard !targetBytes.isEmpty, targetBytes.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
            throw .badRequest
        }
        let minor = try parseVersion(versionBytes)

        let target = String(decoding: targetBytes, as: UTF8.self)
        guard let parts = RequestTarget.split(target),
              let path = PercentEncoding.decode(parts.rawPath, plusAsSpace: false) else {
            throw .badRequest
        }
        return HTTPRequestHead(
            method: String(decoding: methodBytes, as: UTF8.self), target: target,
            path: path, rawQuery: parts.rawQuery, minorVersion: minor, headers: [],
            contentLength: 0, keepAlive: false, expectsContinue: false)
    }

    /// "HTTP/1.1" → 1, "HTTP/1.0" → 0; another well-formed version → 505.
    private static func parseVersion(_ bytes: ArraySlice<UInt8>) throws(HTTPParseError) -> Int {
        let text = Array(bytes)
        let prefix = Array("HTTP/".utf8)
        guard text.count == 8, Array(text[0..<5]) == prefix, text[6] == UInt8(ascii: "."),
              isDigit(text[5]), isDigit(text[7]) else { throw .badRequest }
        guard text[5] == UInt8(ascii: "1"), text[7] <= UInt8(ascii: "1") else {
            throw .versionNotSupported
        }
        return Int(text[7] - UInt8(ascii: "0"))
    }

    private static func parseHeaderLine(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> (String, String) {
        // A leading blank is obsolete line folding (RFC 9112 5.2): refused.
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw .badRequest }
        let nameBytes = line[..<colon]
        guard !nameBytes.isEmpty, nameBytes.allSatisfy(isTokenByte) else { throw .badRequest }
        var valueBytes = line[(colon + 1)...]
        while let first = valueBytes.first, isBlank(first) { valueBytes = valueBytes.dropFirst() }
        while let last = valueBytes.last, isBlank(last) { valueBytes = valueBytes.dropLast() }
        guard valueBytes.allSatisfy({ ($0 >= 0x20 && $0 != 0x7F) || $0 == 0x09 }) else { throw .badRequest }
        return (String(decoding: nameBytes, as: UTF8.self), String(decoding: valueBytes, as: UTF8.self))
    }

    private static func parseContentLength(_ value: String) -> Int? {
        let utf8 = value.utf8
        guard !utf8.isEmpty, utf8.count <= 18, utf8.allSatisfy(isDigit) else { return nil }
        return Int(value)
    }
}

/// RFC 9110 tchar.
func isTokenByte(_ c: UInt8) -> Bool {
    switch c {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
         UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    default:
        return "!#$%&'*+-.^_`|~".utf8.contains(c)
    }
}

private func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
private func isBlank(_ c: UInt8) -> Bool { c == UInt8(ascii: " ") || c == 0x09 }

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    func trimmingBlanks() -> SubSequence {
        var result = self[...]
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
