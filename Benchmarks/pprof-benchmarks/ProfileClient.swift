import CPprof
import Glibc
import Synchronization

/// A `/debug/pprof/profile?seconds=N` request over loopback, made from its
/// own client thread, as `go tool pprof` would make it.
final class ProfileRequest: @unchecked Sendable {
    let seconds: Int
    private let descriptor: Int32
    private var thread: pthread_t?
    private let done = Atomic<Bool>(false)
    // Written by the client thread before `done`, read after join.
    private var response: [UInt8] = []
    private(set) var sentAtNanoseconds: Int64 = 0
    private(set) var answeredAtNanoseconds: Int64 = 0

    /// Connects and sends the request; the client thread then waits for the answer.
    init(port: Int, seconds: Int) {
        self.seconds = seconds
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if descriptor < 0 { fatal("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 { fatal("connect to 127.0.0.1:\(port): errno \(errno)") }
        let request = "GET /debug/pprof/profile?seconds=\(seconds) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
            + "User-Agent: pprof-benchmarks\r\nConnection: close\r\n\r\n"
        let bytes = Array(request.utf8)
        sentAtNanoseconds = monotonicNanoseconds()
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { fatal("send: errno \(errno)") }
            sent += n
        }
        thread = spawnThread(name: "bench-client") { [self] in self.receive() }
    }

    private func receive() {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            response.append(contentsOf: chunk[0..<n])
        }
        answeredAtNanoseconds = monotonicNanoseconds()
        done.store(true, ordering: .releasing)
    }

    var isAnswered: Bool { done.load(ordering: .acquiring) }

    /// Hangs up the way a client that stops waiting does: it shuts down its
    /// sending side. The server sees that (POLLRDHUP), ends the profile early
    /// and still sends what it collected, which this half-open socket reads.
    func hangUp() {
        _ = shutdown(descriptor, Int32(SHUT_WR))
    }

    /// Waits for the whole answer and decodes the profile in it.
    func finish() -> DecodedProfile {
        if let thread { pthread_join(thread, nil) }
        thread = nil
        close(descriptor)
        return DecodedProfile(httpResponse: response)
    }
}

/// The figures the benchmark needs from a pprof CPU profile.
struct DecodedProfile {
    /// Sum of `samples/count` over all samples.
    var samples: Int64 = 0
    /// Sum of `cpu/nanoseconds`.
    var cpuNanoseconds: Int64 = 0
    /// Sample records and their summed stack depth (to report the mean depth).
    var records = 0
    var framesInRecords = 0
    var timeNanoseconds: Int64 = 0
    var durationNanoseconds: Int64 = 0
    var periodNanoseconds: Int64 = 0
    var comments: [String] = []

    var droppedSamples: Int64? { commentValue("dropped_samples=") }
    var leafOnlySamples: Int64? { commentValue("leaf_only_samples=") }

    private func commentValue(_ key: String) -> Int64? {
        for comment in comments {
            guard let range = comment.firstRange(of: key) else { continue }
            return Int64(comment[range.upperBound...].prefix { $0.isNumber })
        }
        return nil
    }

    init(httpResponse: [UInt8]) {
        guard let headEnd = Self.find([13, 10, 13, 10], in: httpResponse) else {
            fatal("profile response has no HTTP head (\(httpResponse.count) bytes)")
        }
        let head = String(decoding: httpResponse[0..<headEnd], as: UTF8.self)
        guard head.hasPrefix("HTTP/1.1 200") else {
            let body = String(decoding: httpResponse[(headEnd + 4)...], as: UTF8.self)
            fatal("profile request failed: \(head.split(separator: "\r\n").first ?? "") \(body)")
        }
        self.init(gzippedBody: Array(httpResponse[(headEnd + 4)...]))
    }

    /// The body of a profile response: a gzipped profile.proto.
    init(gzippedBody body: [UInt8]) {
        var raw: UnsafeMutablePointer<UInt8>?
        var length = 0
        let rc = body.withUnsafeBufferPointer { cpprof_gunzip($0.baseAddress, $0.count, &raw, &length) }
        guard rc == 0, let raw else { fatal("profile body is not gzip (zlib \(rc))") }
        let bytes = Array(UnsafeBufferPointer(start: raw, count: length))
        free(raw)
        decode(profile: bytes)
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i..<(i + needle.count)].elementsEqual(needle) {
            return i
        }
        return nil
    }

    private mutating func decode(profile bytes: [UInt8]) {
        var strings: [String] = []
        var commentIndexes: [Int64] = []
        var reader = ProtoReader(bytes[...])
        while let (field, value) = reader.next() {
            switch (field, value) {
            case (2, .bytes(let sample)): decode(sample: sample)
            case (6, .bytes(let text)): strings.append(String(decoding: text, as: UTF8.self))
            case (9, .varint(let v)): timeNanoseconds = Int64(bitPattern: v)
            case (10, .varint(let v)): durationNanoseconds = Int64(bitPattern: v)
            case (12, .varint(let v)): periodNanoseconds = Int64(bitPattern: v)
            case (13, .varint(let v)): commentIndexes.append(Int64(bitPattern: v))
            case (13, .bytes(let packed)): commentIndexes += ProtoReader.packedVarints(packed).map { Int64(bitPattern: $0) }
            default: break
            }
        }
        comments = commentIndexes.compactMap { $0 >= 0 && Int($0) < strings.count ? strings[Int($0)] : nil }
    }

    private mutating func decode(sample bytes: ArraySlice<UInt8>) {
        var locations = 0
        var values: [Int64] = []
        var reader = ProtoReader(bytes)
        while let (field, value) = reader.next() {
            switch (field, value) {
            case (1, .varint): locations += 1
            case (1, .bytes(let packed)): locations += ProtoReader.packedVarints(packed).count
            case (2, .varint(let v)): values.append(Int64(bitPattern: v))
            case (2, .bytes(let packed)): values += ProtoReader.packedVarints(packed).map { Int64(bitPattern: $0) }
            default: break
            }
        }
        records += 1
        framesInRecords += locations
        if values.count >= 1 { samples += values[0] }
        if values.count >= 2 { cpuNanoseconds += values[1] }
    }
}

/// Just enough protobuf wire format to read a profile.
struct ProtoReader {
    enum Value {
        case varint(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed
    }

    private var data: ArraySlice<UInt8>

    init(_ data: ArraySlice<UInt8>) { self.data = data }

    mutating func next() -> (Int, Value)? {
        guard !data.isEmpty, let key = readVarint() else { return nil }
        let field = Int(key >> 3)
        switch key & 7 {
        case 0:
            guard let v = readVarint() else { return nil }
            return (field, .varint(v))
        case 1: return skip(8) ? (field, .fixed) : nil
        case 5: return skip(4) ? (field, .fixed) : nil
        case 2:
            guard let length = readVarint(), length <= UInt64(data.count) else { return nil }
            let start = data.startIndex
            let slice = data[start..<(start + Int(length))]
            data = data[(start + Int(length))...]
            return (field, .bytes(slice))
        default:
            fatal("unexpected protobuf wire type \(key & 7)")
        }
    }

    private mutating func skip(_ n: Int) -> Bool {
        guard data.count >= n else { return false }
        data = data.dropFirst(n)
        return true
    }

    private mutating func readVarint() -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while let byte = data.first {
            data = data.dropFirst()
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }

    static func packedVarints(_ bytes: ArraySlice<UInt8>) -> [UInt64] {
        var reader = ProtoReader(bytes)
        var out: [UInt64] = []
        while !reader.data.isEmpty, let v = reader.readVarint() { out.append(v) }
        return out
    }
}
