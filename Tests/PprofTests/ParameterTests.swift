import Testing

@testable import Pprof

/// Every numeric parameter (`seconds`, `debug`, `gc`) of every endpoint,
/// negative, zero, huge, overflowing, not a number, empty and repeated:
/// Go's answer where Go has one (compat spec 1.3-1.5), a clear 400 otherwise.
@Suite("Parameters, table-driven, every endpoint")
struct ParameterTests {
    /// The test server's `maxProfileSeconds`: small, so that Go's CPU default
    /// of 30 s shows up as a 400 instead of a 30 s wait.
    static let maxSeconds: Int64 = 5

    /// A raw query value and what Go's `strconv.ParseInt(v, 10, 64)` makes of
    /// it after form decoding (nil: an error).
    static let values: [(raw: String, go: Int64?)] = [
        ("-1", -1), ("0", 0), ("+0", 0), ("-0", 0), ("1.5", nil), ("abc", nil), ("", nil),
        ("99999999999999999999", nil), ("9223372036854775807", .max), ("-9223372036854775808", .min),
        ("9223372036854775808", nil), ("0x10", nil), ("%201", nil), ("1e3", nil), ("%2B6", 6),
        ("١", nil), ("%00", nil), ("2%00", nil), ("7", 7), ("%31", 1),
    ]

    static let namedProfiles = ["heap", "allocs", "goroutine", "threadcreate", "block", "mutex"]

    enum Expected: CustomStringConvertible {
        case proto(filename: String)
        case text
        case html
        case error(Int, String)

        var description: String {
            switch self {
            case let .proto(f): "200 profile \(f)"
            case .text: "200 text"
            case .html: "200 html"
            case let .error(s, b): "\(s) \(b.debugDescription)"
            }
        }
    }

    static let invalidSeconds = Expected.error(400, "invalid value for \"seconds\" - must be a positive integer\n")
    static let overMaximum = Expected.error(400, "profile duration exceeds the server's maximum of \(maxSeconds) seconds\n")

    /// Go's answer to `name?param=value`, or nil for a request that would
    /// sample or wait (those are covered elsewhere).
    static func expected(endpoint: String, param: String, value: (raw: String, go: Int64?)) -> Expected? {
        switch endpoint {
        case "": return .html
        case "cmdline", "symbol": return .text
        case "profile":
            guard param == "seconds" else { return overMaximum } // missing seconds: 30
            let seconds = value.go.flatMap { $0 > 0 ? $0 : nil } ?? 30
            return seconds > maxSeconds ? overMaximum : nil
        default:
            switch param {
            case "seconds":
                if value.raw.isEmpty { return .proto(filename: endpoint) } // an empty seconds is ignored
                guard let s = value.go, s > 0 else { return invalidSeconds }
                if s > maxSeconds { return overMaximum }
                // A real delta waits `s` seconds: one row is enough.
                return endpoint == "mutex" && s == 1 ? .proto(filename: "mutex-delta") : nil
            case "debug":
                return (value.go.flatMap { Int(exactly: $0) } ?? 0) != 0 ? .text : .proto(filename: endpoint)
            default: // gc: accepted, ignored
                return .proto(filename: endpoint)
            }
        }
    }

    /// Repeated parameters (the first wins, as Go's FormValue), combinations
    /// (checked in Go's order), encoded keys, and pairs Go's query parser skips.
    static let combinations: [(target: String, expected: Expected)] = [
        ("heap?seconds=abc&seconds=1", invalidSeconds),
        ("heap?seconds=&seconds=abc", .proto(filename: "heap")),
        ("heap?debug=1&debug=0", .text),
        ("heap?debug=0&debug=1", .proto(filename: "heap")),
        ("goroutine?debug=abc&debug=2", .proto(filename: "goroutine")),
        ("goroutine?debug=2&debug=abc", .text),
        ("profile?seconds=abc&seconds=1", overMaximum),
        ("profile?seconds=6&seconds=1", overMaximum),
        ("mutex?seconds=1&debug=-1", .error(400, "seconds and debug params are incompatible\n")),
        ("block?seconds=9999&debug=1", overMaximum),
        ("allocs?seconds=0&debug=1", invalidSeconds),
        ("heap?seconds=-1&gc=1", invalidSeconds),
        ("heap?gc=-1&gc=99999999999999999999", .proto(filename: "heap")),
        ("threadcreate?%73econds=abc", invalidSeconds),
        ("threadcreate?seconds=1;x", .proto(filename: "threadcreate")),
        ("threadcreate?seconds=%zz", .proto(filename: "threadcreate")),
        ("threadcreate?seconds", .proto(filename: "threadcreate")),
        ("block?seconds=+", invalidSeconds),
        ("block?seconds=%2B", invalidSeconds),
        ("block?seconds=%20", invalidSeconds),
        ("block?debug=%2B1", .text),
        ("symbol?seconds=-1&debug=abc&gc=1", .text),
        ("?seconds=-1&debug=9999", .html),
    ]

    @Test("seconds, debug and gc on every endpoint: Go's answer or a clear 400")
    func everyEndpointEveryValue() throws {
        let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0, maxProfileSeconds: Int(Self.maxSeconds)))
        defer { server.stop() }
        let port = try #require(server.port)
        var rows: [(target: String, expected: Expected)] = []
        for endpoint in ["", "cmdline", "symbol", "profile"] + Self.namedProfiles {
            for param in ["seconds", "debug", "gc"] {
                // gc is read by no endpoint: a few values show that.
                let values = param == "gc" ? Self.values.filter { ["-1", "abc", "", "99999999999999999999", "7"].contains($0.raw) } : Self.values
                for value in values {
                    guard let expected = Self.expected(endpoint: endpoint, param: param, value: value) else { continue }
                    rows.append(("\(endpoint)?\(param)=\(value.raw)", expected))
                }
            }
        }
        rows += Self.combinations
        #expect(rows.count > 300)
        for (target, expected) in rows {
            let path = "/debug/pprof/" + target
            let response = try TestHTTP.request(port: port, target: path)
            Self.check(response, expected, path)
        }
    }

    static func check(_ r: StrictResponse, _ expected: Expected, _ target: String) {
        #expect(r.header("X-Content-Type-Options") == "nosniff", "\(target)")
        switch expected {
        case let .proto(filename):
            #expect(r.status == 200, "\(target): \(r.status) \(r.text.prefix(200))")
            #expect(r.header("Content-Type") == "application/octet-stream", "\(target)")
            #expect(r.header("Content-Disposition") == "attachment; filename=\"\(filename)\"", "\(target)")
            #expect((try? DecodedProfile(gzipped: r.body)) != nil, "\(target): the body does not gunzip and decode")
        case .text:
            #expect(r.status == 200, "\(target): \(r.status) \(r.text.prefix(200))")
            #expect(r.header("Content-Type") == "text/plain; charset=utf-8", "\(target)")
            #expect(!r.body.isEmpty, "\(target)")
        case .html:
            #expect(r.status == 200, "\(target)")
            #expect(r.header("Content-Type") == "text/html; charset=utf-8", "\(target)")
        case let .error(status, body):
            #expect(r.status == status, "\(target): \(r.status) \(r.text.prefix(200))")
            #expect(r.text == body, "\(target)")
            #expect(r.header("X-Go-Pprof") == "1", "\(target)")
            #expect(r.header("Content-Type") == "text/plain; charset=utf-8", "\(target)")
        }
    }

    @Test("the CPU profile's seconds: Go's silent 30 for anything not a positive integer")
    func cpuSecondsTable() {
        for value in Self.values {
            let request = HTTPRequest(method: "GET", target: "/debug/pprof/profile?seconds=\(value.raw)")
            let want = value.go.flatMap { $0 > 0 ? $0 : nil } ?? 30
            #expect(CPUProfileEndpoint.requestedSeconds(request) == want, "seconds=\(value.raw)")
        }
        for (query, want) in [("", Int64(30)), ("seconds=abc&seconds=5", 30), ("seconds=5&seconds=abc", 5),
                              ("debug=1", 30), ("seconds=1;2", 30), ("seconds=%zz", 30), ("Seconds=5", 30)] {
            let request = HTTPRequest(method: "GET", target: "/debug/pprof/profile?\(query)")
            #expect(CPUProfileEndpoint.requestedSeconds(request) == want, "\(query)")
        }
    }
}
