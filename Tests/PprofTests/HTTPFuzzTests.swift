import Glibc
import Testing

@testable import Pprof

// A bounded, seeded mutational fuzzer for the request parser and the live
// server. Deterministic inputs (seed from PPROF_FUZZ_SEED, iterations from
// PPROF_FUZZ_ITERATIONS), a time cap, and invariants checked on every input:
// no crash, the incremental scanner agrees with a one-shot scan, a parsed
// head is well-formed, and the server answers exactly the requests it can
// see with well-formed responses, then still serves a normal request.

/// Well-formed requests the mutations start from: every endpoint, every method
/// the server knows, pipelining, bodies, `Expect`, HTTP/1.0, absolute targets.
let fuzzSeedRequests: [String] = [
    "GET /debug/pprof/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /debug/pprof/cmdline HTTP/1.1\r\n\r\n",
    "HEAD /debug/pprof/cmdline HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /debug/pprof/symbol?0x1234+0x5678 HTTP/1.1\r\n\r\n",
    "POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: 13\r\n\r\n0x1234+0x5678",
    "GET /debug/pprof/heap?debug=1 HTTP/1.1\r\n\r\n",
    "GET /debug/pprof/allocs?gc=1 HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
    "GET /debug/pprof/goroutine?debug=2 HTTP/1.1\r\n\r\n",
    "GET /debug/pprof/goroutine HTTP/1.1\r\n\r\n",
    "GET /debug/pprof/threadcreate?debug=1 HTTP/1.1\r\n\r\n",
    "GET /debug/pprof/block?seconds=abc HTTP/1.1\r\n\r\n",
    "GET /debug/pprof/mutex?debug=1&gc=1 HTTP/1.1\r\n\r\n",
    "GET /debug/pprof/profile?seconds=x HTTP/1.1\r\n\r\n",
    "GET /debug/pprof HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "DELETE /debug/pprof/heap HTTP/1.1\r\n\r\n",
    "GET http://localhost:6060/debug/pprof/?debug=1 HTTP/1.1\r\n\r\n",
    "GET /nope HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "\r\nGET /debug/pprof/mutex HTTP/1.1\r\nX-A: 1\r\nX-B:  two \r\n\r\n",
    "GET /debug/pprof/cmdline HTTP/1.1\r\n\r\nGET /debug/pprof/block HTTP/1.1\r\nConnection: close\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\n\r\n",
]

/// Fragments that tend to matter to an HTTP parser.
private let fuzzTokens: [String] = [
    "\r\n", "\n", "\r", " ", "\t", ":", "%", "%zz", "%00", "%2F", "%ff", "?", "&", "=", ";", "+", "#",
    "\u{0}", "\u{7F}", "\u{FF}", "é", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1", "HTTP/1.", "HTTP/11.1",
    "Content-Length: 5\r\n", "Content-Length: 99999999999999999999\r\n", "Content-Length: -1\r\n",
    "Content-Length: 0\r\n", "Content-Length: 1048577\r\n", "Content-Length:\r\n",
    "Transfer-Encoding: chunked\r\n", "Connection: close\r\n", "Connection: keep-alive\r\n",
    "Expect: 100-continue\r\n", "Authorization: Bearer x\r\n", " folded\r\n",
    "seconds=", "debug=", "gc=", "-1", "0", "9223372036854775807", "9223372036854775808", "1e9", "0x10",
    "HEAD ", "POST ", "GET ", "/debug/pprof/", "../", "//", "*", "http://h", "http://", "\r\n\r\n",
]

/// Mutations of a seed request, reproducible from the generator's seed.
struct RequestMutator {
    var random: SeededGenerator

    mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &random) }

    mutating func next() -> [UInt8] {
        var input = Array(fuzzSeedRequests[int(0..<fuzzSeedRequests.count)].utf8)
        if int(0..<4) == 0 { input += Array(fuzzSeedRequests[int(0..<fuzzSeedRequests.count)].utf8) } // pipelined
        let rounds = int(0..<8) == 0 ? 0 : int(1..<5)
        for _ in 0..<rounds { mutate(&input) }
        return input
    }

    private mutating func mutate(_ input: inout [UInt8]) {
        let position = int(0..<(input.count + 1))
        switch int(0..<11) {
        case 0 where !input.isEmpty: // flip a bit
            let i = int(0..<input.count)
            input[i] ^= UInt8(1) << UInt8(int(0..<8))
        case 1 where !input.isEmpty: // any byte
            input[int(0..<input.count)] = UInt8(truncatingIfNeeded: int(0..<256))
        case 2: // random bytes
            input.insert(contentsOf: (0..<int(1..<9)).map { _ in UInt8(truncatingIfNeeded: int(0..<256)) }, at: position)
        case 3 where !input.isEmpty: // delete a range
            let start = int(0..<input.count)
            input.removeSubrange(start..<min(input.count, start + int(1..<16)))
        case 4 where !input.isEmpty: // duplicate a range
            let start = int(0..<input.count)
            let slice = input[start..<min(input.count, start + int(1..<32))]
            input.insert(contentsOf: slice, at: position)
        case 5, 6: // an interesting token
            input.insert(contentsOf: Array(fuzzTokens[int(0..<fuzzTokens.count)].utf8), at: position)
        case 7: // truncate
            input.removeSubrange(position...)
        case 8: // line ends: CRLF to LF, CR or nothing
            if let crlf = input.indices.dropLast().filter({ input[$0] == 13 && input[$0 + 1] == 10 }).randomElement(using: &random) {
                switch int(0..<3) {
                case 0: input.remove(at: crlf)
                case 1: input.remove(at: crlf + 1)
                default: input.removeSubrange(crlf...(crlf + 1))
                }
            }
        case 9: // something long, around the limits (8 KiB line, 16 KiB of headers, 100 headers)
            switch int(0..<3) {
            case 0: input.insert(contentsOf: [UInt8](repeating: UInt8(ascii: "a"), count: int(8000..<8400)), at: position)
            case 1: input.insert(contentsOf: Array(("X-Pad: " + String(repeating: "p", count: int(16_000..<16_600)) + "\r\n").utf8), at: position)
            default: input.insert(contentsOf: Array(String(repeating: "X-N: v\r\n", count: int(95..<105)).utf8), at: position)
            }
        default: // splice in part of another seed
            let other = Array(fuzzSeedRequests[int(0..<fuzzSeedRequests.count)].utf8)
            let start = int(0..<other.count)
            input.insert(contentsOf: other[start..<min(other.count, start + int(1..<40))], at: position)
        }
    }
}

/// What the server should answer to `bytes`, sent in one go and followed by
/// a half-close: the methods of the requests it will answer, in order, and
/// the status of the error answer that ends the connection, if any.
/// Computed with the parser under test; the live check is that the server's
/// bytes on the wire match it, response for response.
func expectedAnswers(to bytes: [UInt8], configuration: HTTPServerConfiguration) -> (methods: [String], error: Int?) {
    var rest = bytes
    var methods: [String] = []
    while true {
        var scanner = HTTPHeadScanner(maxRequestLineBytes: HTTPServerConfiguration.maxRequestLineBytes,
                                      maxHeaderBytes: configuration.maxHeaderBytes,
                                      maxHeaderCount: configuration.maxHeaderCount)
        let range: Range<Int>
        do throws(HTTPParseError) {
            guard let found = try scanner.scan(rest) else { return (methods, nil) } // EOF mid-head: no answer
            range = found
        } catch {
            return (methods, error.status)
        }
        let head: HTTPRequestHead
        do throws(HTTPParseError) {
            head = try HTTPRequestParser.parseHead(rest[range])
        } catch {
            return (methods, error.status)
        }
        // The body as the server reads it: Content-Length bytes or chunks.
        var after = Array(rest[range.upperBound...])
        do throws(HTTPParseError) {
            var body = try HTTPBodyReader(head, maxBytes: configuration.maxRequestBodyBytes)
            guard try body.take(from: &after) != nil else { return (methods, nil) } // EOF mid-body: no answer
        } catch {
            return (methods, error.status)
        }
        methods.append(head.method)
        if !head.keepAlive { return (methods, nil) }
        rest = after
    }
}

@Suite("HTTP fuzzing")
struct HTTPFuzzTests {
    @Test("the request parser survives seeded mutations and scans the same in any chunking")
    func parserFuzz() {
        let seed = SeededGenerator.seed(fromEnvironment: "PPROF_FUZZ_SEED", default: 0x5EED_F022)
        let iterations = environmentInt("PPROF_FUZZ_ITERATIONS", default: 20_000)
        let capSeconds = Double(environmentInt("PPROF_FUZZ_SECONDS", default: 4))
        var mutator = RequestMutator(random: SeededGenerator(seed: seed))
        var chunking = SeededGenerator(seed: seed ^ 0xC0FFEE)
        var failures: [String] = []
        var outcomes: [String: Int] = [:]
        let start = monotonicSeconds()
        var done = 0
        for _ in 0..<iterations where monotonicSeconds() - start < capSeconds {
            let input = mutator.next()
            done += 1
            // Server limits, and small ones so that 414 and 431 are common.
            for limits in [(8192, 16 << 10, 100), (40, 96, 3)] {
                let whole = Self.scan(input, limits: limits, chunking: &chunking, chunked: false)
                let chunked = Self.scan(input, limits: limits, chunking: &chunking, chunked: true)
                if whole != chunked {
                    failures.append("scan \(whole) vs chunked \(chunked) for \(Self.show(input))")
                }
                if limits.0 == 8192 { outcomes[whole.description, default: 0] += 1 }
                guard case let .head(range) = whole else { continue }
                do throws(HTTPParseError) {
                    let head = try HTTPRequestParser.parseHead(input[range])
                    if let problem = Self.check(head) { failures.append("\(problem) for \(Self.show(input))") }
                } catch {
                    outcomes["parse \(error)", default: 0] += 1
                }
            }
            if failures.count > 20 { break }
        }
        print("parser fuzz: seed \(seed), \(done) inputs in \(Int((monotonicSeconds() - start) * 1000)) ms: \(outcomes.sorted { $0.key < $1.key })")
        #expect(done >= 200, "only \(done) inputs within the time cap")
        #expect(failures.isEmpty, "\(failures.prefix(5).joined(separator: "\n"))")
    }

    @Test("parameter parsers agree with Go's strconv on random strings")
    func numberParsersFuzz() {
        var random = SeededGenerator(seed: SeededGenerator.seed(fromEnvironment: "PPROF_FUZZ_SEED", default: 0x5EED_F022))
        let alphabet = Array("0123456789+-_ xXabcdefABCDEFoO.e%&=;\u{0}\u{FF}٣".unicodeScalars)
        var failures: [String] = []
        for _ in 0..<20_000 {
            var text = ""
            for _ in 0..<Int.random(in: 0..<24, using: &random) {
                text.unicodeScalars.append(alphabet[Int.random(in: 0..<alphabet.count, using: &random)])
            }
            if Int.random(in: 0..<4, using: &random) == 0 { text = String(Int64.random(in: .min ... .max, using: &random)) }
            // Go: strconv.ParseInt(s, 10, 64); Swift's Int64(_:radix:) has the same grammar.
            if parseGoInt64(text) != Int64(text, radix: 10) { failures.append("parseGoInt64(\(text.debugDescription))") }
            if goAtoiOrZero(text) != Int(Int64(text, radix: 10) ?? 0) { failures.append("goAtoiOrZero(\(text.debugDescription))") }
            _ = SymbolEndpoint.parseGoUInt64(Substring(text))
            _ = PercentEncoding.decode(text, plusAsSpace: true)
            _ = PercentEncoding.firstQueryValue("seconds", in: "seconds=" + text + "&debug=" + text)
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }

    enum ScanResult: Equatable, CustomStringConvertible {
        case head(Range<Int>)
        case incomplete
        case error(HTTPParseError)

        var description: String {
            switch self {
            case .head: "head"
            case .incomplete: "incomplete"
            case let .error(e): "scan \(e)"
            }
        }
    }

    /// Scans `input` whole, or (with `chunking`) fed in random pieces of 1-64 bytes.
    static func scan(_ input: [UInt8], limits: (Int, Int, Int), chunking: inout SeededGenerator, chunked: Bool) -> ScanResult {
        var scanner = HTTPHeadScanner(maxRequestLineBytes: limits.0, maxHeaderBytes: limits.1, maxHeaderCount: limits.2)
        var buffer: [UInt8] = []
        var offset = 0
        repeat {
            let step = chunked ? Int.random(in: 1...64, using: &chunking) : input.count
            let end = min(input.count, offset + max(1, step))
            buffer += input[offset..<end]
            offset = end
            do throws(HTTPParseError) {
                if let range = try scanner.scan(buffer) { return .head(range) }
            } catch {
                return .error(error)
            }
        } while offset < input.count
        return .incomplete
    }

    /// What must hold for any head the parser accepts.
    static func check(_ head: HTTPRequestHead) -> String? {
        if head.method.isEmpty || !head.method.utf8.allSatisfy(isTokenByte) { return "bad method \(head.method.debugDescription)" }
        if head.target.isEmpty || head.target.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
            return "bad target \(head.target.debugDescription)"
        }
        if !(0...1).contains(head.minorVersion) { return "minor version \(head.minorVersion)" }
        if head.contentLength < 0 || head.contentLength > 999_999_999_999_999_999 { return "content length \(head.contentLength)" }
        for (name, value) in head.headers {
            if name.isEmpty || !name.utf8.allSatisfy(isTokenByte) { return "bad header name \(name.debugDescription)" }
            if value.utf8.contains(where: { $0 == 0 || $0 == 10 || $0 == 13 }) { return "bad header value \(value.debugDescription)" }
        }
        if head.minorVersion == 0 && head.keepAlive
            && !head.headers.contains(where: { asciiCaseInsensitiveEqual($0.name, "Connection") }) {
            return "HTTP/1.0 kept alive without asking"
        }
        let request = HTTPRequest(method: head.method, target: head.target, path: head.path, rawQuery: head.rawQuery,
                                  headers: head.headers, body: [])
        for name in ["seconds", "debug", "gc"] {
            if let value = request.queryValue(name) { _ = parseGoInt64(value) }
        }
        return nil
    }

    static func show(_ input: [UInt8]) -> String {
        String(decoding: input.prefix(300), as: UTF8.self).debugDescription + (input.count > 300 ? "... (\(input.count) bytes)" : "")
    }
}

extension ProcessWideStateTests {
    /// Over a real server: a mutated request may well be a valid CPU profile
    /// request, so this runs with the other tests that may sample.
    @Suite("HTTP fuzzing, live server", .serialized)
    struct LiveHTTPFuzzTests {
        @Test("a live server answers seeded mutated requests with well-formed responses and keeps serving")
        func liveServerFuzz() throws {
            // At most 1 s per profile or delta profile a mutation may produce.
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0, maxProfileSeconds: 1))
            defer { server.stop() }
            let port = try #require(server.port)
            let configuration = HTTPServerConfiguration(address: .tcp(host: "127.0.0.1", port: port))
            let seed = SeededGenerator.seed(fromEnvironment: "PPROF_FUZZ_SEED", default: 0x5EED_F022) ^ 0x11FE
            let iterations = environmentInt("PPROF_FUZZ_ITERATIONS", default: 3000)
            let capSeconds = Double(environmentInt("PPROF_FUZZ_SECONDS", default: 5))
            var mutator = RequestMutator(random: SeededGenerator(seed: seed))
            var failures: [String] = []
            var statuses: [Int: Int] = [:]
            var connections = 0
            let start = monotonicSeconds()
            for _ in 0..<iterations where monotonicSeconds() - start < capSeconds {
                let input = mutator.next()
                connections += 1
                let expected = expectedAnswers(to: input, configuration: configuration)
                let exchange = try TestHTTP.exchange(port: port, bytes: input, timeoutSeconds: 20)
                guard exchange.closed else {
                    failures.append("no close within 20 s for \(HTTPFuzzTests.show(input))")
                    break
                }
                let finals: [StrictResponse]
                do {
                    finals = try StrictResponse.parseStream(exchange.bytes[...], bodyless: { i in
                        i < expected.methods.count && expected.methods[i] == "HEAD"
                    }).filter { $0.status >= 200 }
                } catch {
                    failures.append("\(error) for \(HTTPFuzzTests.show(input))")
                    continue
                }
                for r in finals { statuses[r.status, default: 0] += 1 }
                let wanted = expected.methods.count + (expected.error == nil ? 0 : 1)
                // 503: the connection limit, a deliberate answer to any request.
                if finals.count == 1 && finals[0].status == 503 && wanted > 0 { continue }
                if finals.count != wanted {
                    failures.append("\(finals.count) responses \(finals.map(\.status)), expected \(expected) for \(HTTPFuzzTests.show(input))")
                    continue
                }
                if let error = expected.error, finals.last?.status != error {
                    failures.append("error answer \(finals.last?.status ?? 0), expected \(error) for \(HTTPFuzzTests.show(input))")
                }
                if let bad = finals.first(where: { !(200...299).contains($0.status) && $0.status != 301 && !(400...599).contains($0.status) }) {
                    failures.append("status \(bad.status) for \(HTTPFuzzTests.show(input))")
                }
                if failures.count > 10 { break }
            }
            print("live fuzz: seed \(seed), \(connections) connections in \(Int((monotonicSeconds() - start) * 1000)) ms, statuses \(statuses.sorted { $0.key < $1.key })")
            #expect(failures.isEmpty, "\(failures.prefix(5).joined(separator: "\n"))")
            // Enough cases to mean something, even on a loaded machine (the cap is in time, not count).
            #expect(connections >= 20, "only \(connections) connections within the time cap")

            // Still serving, and no connection thread left behind.
            let normal = try TestHTTP.request(port: port, target: "/debug/pprof/cmdline")
            #expect(normal.status == 200)
            #expect(waitUntil(seconds: 10) { server.activeConnectionCount == 0 })
        }
    }
}
