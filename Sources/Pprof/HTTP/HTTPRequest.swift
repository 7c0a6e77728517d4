/// One request as the server read it.
struct HTTPRequest: Sendable {
    /// As sent, e.g. "GET", "HEAD", "POST" (case kept).
    var method: String
    /// The raw request-target, e.g. "/debug/pprof/profile?seconds=5".
    var target: String
    /// The percent-decoded path, without the query.
    var path: String
    /// What follows the first '?', undecoded; "" when there is none.
    var rawQuery: String
    /// In the order received; values trimmed of surrounding blanks.
    var headers: [(name: String, value: String)]
    /// Exactly Content-Length bytes (empty without a body).
    var body: [UInt8]

    /// The first value of the header `name`, compared case-insensitively.
    func header(_ name: String) -> String? {
        headers.first { asciiCaseInsensitiveEqual($0.name, name) }?.value
    }

    /// Go's `r.FormValue(name)` over the URL query: the first value,
    /// form-decoded ('+' is a space, %XX escapes), nil if absent.
    func queryValue(_ name: String) -> String? {
        PercentEncoding.firstQueryValue(name, in: rawQuery)
    }
}

extension HTTPRequest {
    /// Builds a request from a target the way the server would (for tests
    /// and internal callers). A target whose path does not decode keeps its
    /// raw path.
    init(method: String, target: String,
         headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        var path = target
        var rawQuery = ""
        if let parts = RequestTarget.split(target) {
            path = PercentEncoding.decode(parts.rawPath, plusAsSpace: false) ?? String(parts.rawPath)
            rawQuery = parts.rawQuery
        }
        self.init(method: method, target: target, path: path, rawQuery: rawQuery,
                  headers: headers, body: body)
    }
}

/// The parts of a request-target (RFC 9112 section 3.2).
enum RequestTarget {
    /// Splits origin-form ("/p?q"), absolute-form ("http://h/p?q", whose
    /// path defaults to "/") and asterisk-form ("*") targets. Nil for
    /// anything else, such as CONNECT's authority-form.
    static func split(_ target: String) -> (rawPath: Substring, rawQuery: String)? {
        var rest = Substring(target)
        if rest == "*" { return (rest, "") }
        if !rest.hasPrefix("/") {
            guard let colon = rest.firstIndex(of: ":") else { return nil }
            let scheme = rest[..<colon].lowercased()
            let afterColon = rest[rest.index(after: colon)...]
            guard scheme == "http" || scheme == "https", afterColon.hasPrefix("//") else { return nil }
            let afterScheme = afterColon.dropFirst(2)
            let authorityEnd = afterScheme.firstIndex { $0 == "/" || $0 == "?" } ?? afterScheme.endIndex
            guard authorityEnd > afterScheme.startIndex else { return nil }
            rest = afterScheme[authorityEnd...]
            if !rest.hasPrefix("/") { rest = Substring("/" + rest) }
        }
        // A fragment is not sent by clients; drop one if it is.
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        guard let question = rest.firstIndex(of: "?") else { return (rest, "") }
        return (rest[..<question], String(rest[rest.index(after: question)...]))
    }
}

/// ASCII-only case-insensitive comparison (header names and tokens).
func asciiCaseInsensitiveEqual<A: StringProtocol, B: StringProtocol>(_ a: A, _ b: B) -> Bool {
    guard a.utf8.count == b.utf8.count else { return false }
    for (x, y) in zip(a.utf8, b.utf8) where asciiLower(x) != asciiLower(y) {
        return false
    }
    return true
}

@inline(__always)
func asciiLower(_ c: UInt8) -> UInt8 {
    (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) ? c | 0x20 : c
}
