/// URL percent-decoding as Go's net/url does it.
enum PercentEncoding {
    /// Decodes %XX escapes; with `plusAsSpace` (query components) '+' means
    /// ' '. Returns nil for a malformed escape. Bytes that are not UTF-8
    /// become U+FFFD.
    static func decode<S: StringProtocol>(_ text: S, plusAsSpace: Bool) -> String? {
        let utf8 = text.utf8
        if !utf8.contains(UInt8(ascii: "%")) && !(plusAsSpace && utf8.contains(UInt8(ascii: "+"))) {
            return String(text)
        }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue),
                      let low = iterator.next().flatMap(hexValue) else { return nil }
                out.append(high << 4 | low)
            case UInt8(ascii: "+") where plusAsSpace:
                out.append(UInt8(ascii: " "))
            default:
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The first value of `name` in a raw query, like Go's
    /// `url.ParseQuery(q).Get(name)` except that it tells absent (nil) from
    /// empty (""). Pairs with a ';' or a malformed escape are skipped, as Go
    /// skips them.
    static func firstQueryValue(_ name: String, in rawQuery: String) -> String? {
        for pair in rawQuery.split(separator: "&", omittingEmptySubsequences: true) {
            if pair.contains(";") { continue }
            let rawKey: Substring
            let rawValue: Substring
            if let equals = pair.firstIndex(of: "=") {
                rawKey = pair[..<equals]
                rawValue = pair[pair.index(after: equals)...]
            } else {
                rawKey = pair
                rawValue = ""
            }
            guard let key = decode(rawKey, plusAsSpace: true), key == name,
                  let value = decode(rawValue, plusAsSpace: true) else { continue }
            return value
        }
        return nil
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
