/// Reads one request body out of the connection's buffer as its bytes
/// arrive: exactly Content-Length bytes, or a chunked body (RFC 9112 7.1,
/// which HTTP/1.1 servers must accept), whose chunk extensions and trailer
/// fields are read and dropped.
///
/// Limits: the body to `maxBytes` (else 413), a chunk-size or trailer line
/// to 4 KiB and the chunked framing to twice the body limit (else 400 or
/// 413), so that a body of one-byte chunks costs no more than a bounded
/// multiple of its size.
struct HTTPBodyReader {
    private enum Framing {
        case length(Int)
        case chunked
    }

    private enum ChunkState {
        /// A chunk-size line is next.
        case size
        /// This many data bytes of the current chunk are still to come.
        case data(Int)
        /// The CRLF after a chunk's data.
        case dataEnd
        /// Trailer lines until an empty one.
        case trailer
    }

    private let framing: Framing
    private let maxBytes: Int
    private var body: [UInt8] = []
    private var state = ChunkState.size
    private var wireBytes = 0

    static let maxLineBytes = 4096

    init(_ head: HTTPRequestHead, maxBytes: Int) throws(HTTPParseError) {
        self.maxBytes = maxBytes
        if head.chunked {
            framing = .chunked
        } else {
            guard head.contentLength <= maxBytes else { throw .payloadTooLarge }
            framing = .length(head.contentLength)
        }
    }

    /// Whether `buffer` already holds the whole body (no 100 Continue needed).
    func isComplete(_ buffer: [UInt8]) -> Bool {
        if case let .length(count) = framing { return buffer.count >= count }
        return false
    }

    /// Takes what the body needs from the front of `buffer`; returns the
    /// body once complete, nil while more is needed.
    mutating func take(from buffer: inout [UInt8]) throws(HTTPParseError) -> [UInt8]? {
        switch framing {
        case let .length(count):
            guard buffer.count >= count else { return nil }
            let body = Array(buffer[0..<count])
            buffer.removeSubrange(0..<count)
            return body
        case .chunked:
            var index = 0
            defer {
                wireBytes += index
                buffer.removeSubrange(0..<index)
            }
            let done = try decodeChunks(buffer, from: &index)
            guard wireBytes + index <= 2 * maxBytes + Self.maxLineBytes else { throw .payloadTooLarge }
            return done ? body : nil
        }
    }

    /// Decodes from `index` on, advancing it past what was used. True once
    /// the last chunk and the trailer are in.
    private mutating func decodeChunks(_ buffer: [UInt8], from index: inout Int) throws(HTTPParseError) -> Bool {
        while true {
            switch state {
            case .size:
                guard let line = try Self.line(buffer, from: index) else { return false }
                let size = try Self.chunkSize(buffer[index..<line.end])
                index = line.next
                if size == 0 {
                    state = .trailer
                } else {
                    guard size <= maxBytes - body.count else { throw .payloadTooLarge }
                    state = .data(size)
                }
            case let .data(left):
                let available = min(left, buffer.count - index)
                guard available > 0 else { return false }
                body.append(contentsOf: buffer[index..<(index + available)])
                index += available
                state = available == left ? .dataEnd : .data(left - available)
            case .dataEnd:
                guard let line = try Self.line(buffer, from: index) else { return false }
                guard line.end == index else { throw .badRequest }
                index = line.next
                state = .size
            case .trailer:
                guard let line = try Self.line(buffer, from: index) else { return false }
                let empty = line.end == index
                index = line.next
                if empty { return true }
            }
        }
    }

    /// The line starting at `start`: where its content ends (before CRLF or
    /// LF) and where the next begins; nil if its LF has not arrived.
    private static func line(_ buffer: [UInt8], from start: Int) throws(HTTPParseError) -> (end: Int, next: Int)? {
        let limit = min(buffer.count, start + maxLineBytes)
        guard let lf = buffer[start..<limit].firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.count - start >= maxLineBytes { throw .badRequest }
            return nil
        }
        let end = lf > start && buffer[lf - 1] == UInt8(ascii: "\r") ? lf - 1 : lf
        return (end, lf + 1)
    }

    /// "1a;ext=x" → 26. At most 15 hex digits (no overflow).
    private static func chunkSize(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> Int {
        var size = 0
        var digits = 0
        for byte in line {
            let value: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int(byte - UInt8(ascii: "A")) + 10
            case UInt8(ascii: ";"), UInt8(ascii: " "), 0x09:
                guard digits > 0 else { throw .badRequest }
                return size  // a chunk extension follows: ignored
            default: throw .badRequest
            }
            digits += 1
            guard digits <= 15 else { throw .payloadTooLarge }
            size = size << 4 | value
        }
        guard digits > 0 else { throw .badRequest }
        return size
    }
}
