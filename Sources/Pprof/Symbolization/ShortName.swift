// Short, readable function names from the runtime's full demangled Swift
// names, in the spirit of `swift demangle --simplified` but module-qualified:
//
//   function signature specialization <Arg[4] = …> of generic specialization
//   <Swift.Int> of Swift._merge<A>(low: Swift.UnsafeMutablePointer<A>, …) throws -> Swift.Bool
//     → specialized Swift._merge(low:mid:high:buffer:by:)
//   closure #1 (Swift.Optional<…>) -> … in static Pprof.PThread.spawn(name: Swift.String, …) -> …
//     → closure #1 in Pprof.PThread.spawn(name:joinable:_:)
//   (2) await resume partial function for App.Handler.load(id: Swift.Int) async throws -> App.Item
//     → App.Handler.load(id:)
//
// Argument labels without types, no return type, no generic signatures,
// no private discriminators or extension contexts. The input is only read
// (never trusted to be well formed): anything not recognised is copied, and
// the result is capped at `maxLength` characters.

enum ShortName {
    /// Longest name returned; longer ones end in "...".
    static let maxLength = 120

    /// The short form of a full demangled name (C and C++ names come back
    /// as they are, unless over `maxLength`).
    static func of(_ full: String) -> String {
        var bytes = Array(full.utf8)
        bytes = removingUnmangledSuffix(bytes)
        bytes = removingContextNoise(bytes)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        simplify(bytes[...], into: &out)
        return capped(String(decoding: out, as: UTF8.self))
    }

    /// The short form of a demangled C++ name: scopes and name, no template
    /// arguments or parameter types: `swift::metadataimpl::ValueWitnesses::initializeWithTake()`.
    static func ofCxx(_ full: String) -> String {
        let s = Array(full.utf8)[...]
        var out: [UInt8] = []
        var i = s.startIndex
        var braces = 0
        while i < s.endIndex {
            let c = s[i]
            if c == UInt8(ascii: "{") { braces += 1 }
            if c == UInt8(ascii: "}") { braces -= 1 }
            if braces == 0, c == UInt8(ascii: "<"), !endsWithOperatorKeyword(s[..<i]) {
                i = skipGroup(s, from: i)
                continue
            }
            if braces == 0, c == UInt8(ascii: "("), !s[i...].starts(with: "(anonymous namespace)".utf8) {
                out += "()".utf8
                i = skipGroup(s, from: i)
                // `::` after the parameters continues a local name (`f()::lambda`).
                guard s[i...].starts(with: "::".utf8) else { break }
                continue
            }
            out.append(c)
            i += 1
        }
        return capped(String(decoding: out, as: UTF8.self))
    }

    private static func endsWithOperatorKeyword(_ s: ArraySlice<UInt8>) -> Bool {
        var s = s
        while s.last.map(isOperatorHead) == true { s = s.dropLast() }
        return s.reversed().starts(with: "rotarepo".utf8)
    }

    private static func capped(_ name: String) -> String {
        guard name.count > maxLength else { return name }
        return String(name.prefix(maxLength - 3)) + "..."
    }

    // MARK: - Prefix phrases

    /// Phrases that wrap another name: resume points stand for the function
    /// they resume into; specialisations become one "specialized".
    private static let droppedPrefixes = ["merged ", "static "]
    private static let resumePhrases = [" await resume partial function for ", " suspend resume partial function for "]

    private static func simplify(_ s: ArraySlice<UInt8>, into out: inout [UInt8]) {
        var s = s
        var specialized = false
        while true {
            if let rest = afterResumePhrase(s) { s = rest; continue }
            if let prefix = droppedPrefixes.first(where: { s.starts(with: $0.utf8) }) {
                s = s.dropFirst(prefix.utf8.count); continue
            }
            if let rest = afterSpecialization(s) { s = rest; specialized = true; continue }
            break
        }
        if specialized { out += "specialized ".utf8 }
        if s.starts(with: "partial apply forwarder for ".utf8) {
            out += "partial apply for ".utf8
            simplify(s.dropFirst("partial apply forwarder for ".utf8.count), into: &out)
        } else if s.starts(with: "reabstraction thunk".utf8) {
            out += "reabstraction thunk".utf8
        } else if s.starts(with: "thunk for ".utf8) {
            out += "thunk".utf8
        } else if s.starts(with: "protocol witness for ".utf8) {
            out += "protocol witness for ".utf8
            let body = s.dropFirst("protocol witness for ".utf8.count)
            if let split = find(" in conformance ", in: body) {
                // `protocol witness for Type.requirement(labels:)`: the
                // conforming type and the member, without the protocol.
                var requirement: [UInt8] = []
                entity(body[..<split], into: &requirement)
                conformingType(body[(split + " in conformance ".utf8.count)...], into: &out)
                out.append(UInt8(ascii: "."))
                out += member(of: requirement[...])
            } else {
                entity(body, into: &out)
            }
        } else if let (head, rest) = closureHead(s) {
            out += head
            out += " in ".utf8
            simplify(rest, into: &out)
        } else {
            entity(s, into: &out)
        }
    }

    /// `(N) await resume partial function for X` → X.
    private static func afterResumePhrase(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        guard s.first == UInt8(ascii: "("), let close = s.firstIndex(of: UInt8(ascii: ")")) else { return nil }
        let rest = s[(close + 1)...]
        for phrase in resumePhrases where rest.starts(with: phrase.utf8) {
            return rest.dropFirst(phrase.utf8.count)
        }
        return nil
    }

    /// `… specialization <…> of X` → X.
    private static func afterSpecialization(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        guard s.starts(with: "generic ".utf8) || s.starts(with: "function signature ".utf8)
            || s.starts(with: "specialization".utf8) else { return nil }
        guard let open = find("specialization <", in: s) else { return nil }
        let angle = open + "specialization ".utf8.count
        // Only angle brackets count here: the demangler leaves the `[` of
        // "Arg[4] = [Closure Propagated : …" unclosed.
        let end = skipGroup(s, from: angle, anglesOnly: true)
        let rest = s[end...]
        guard rest.starts(with: " of ".utf8) else { return nil }
        return rest.dropFirst(4)
    }

    /// `closure #1 (sig) in X`, `implicit closure #2 (sig) in X`, and local
    /// functions `helper #1 (sig) in X`: the head without its signature,
    /// and X.
    private static func closureHead(_ s: ArraySlice<UInt8>) -> ([UInt8], ArraySlice<UInt8>)? {
        guard let hash = find(" #", in: s), !s[..<hash].contains(UInt8(ascii: "(")) else { return nil }
        var i = hash + 2
        while i < s.endIndex, isDigit(s[i]) { i += 1 }
        guard i > hash + 2 else { return nil }
        let head = Array(s[..<i])
        // The signature: a type, up to " in " outside brackets.
        var depth = 0
        var j = i
        while j < s.endIndex {
            let c = s[j]
            if c == UInt8(ascii: "(") || c == UInt8(ascii: "[") || c == UInt8(ascii: "<") { depth += 1 }
            if c == UInt8(ascii: ")") || c == UInt8(ascii: "]") || (c == UInt8(ascii: ">") && !isArrow(s, j)) {
                depth -= 1
            }
            if depth == 0, s[j...].starts(with: " in ".utf8) {
                return (head, s[(j + 4)...])
            }
            j += 1
        }
        return nil
    }

    // MARK: - Entities

    /// `Module.Type.name<T>(label: T, _: U) throws -> R` → `Module.Type.name(label:_:)`;
    /// `Module.Type.value.getter : T` → `Module.Type.value.getter`.
    private static func entity(_ s: ArraySlice<UInt8>, into out: inout [UInt8]) {
        let s = s.starts(with: "static ".utf8) ? s.dropFirst(7) : s
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if c == UInt8(ascii: "."), i + 1 < s.endIndex, isOperatorHead(s[i + 1]) {
                // An operator's name: `.==`, `...<`, up to the space before infix/prefix/postfix.
                var end = i + 1
                while end < s.endIndex, s[end] != UInt8(ascii: " ") { end += 1 }
                out += s[i..<end]
                i = end
            } else if c == UInt8(ascii: "<") {
                i = skipGroup(s, from: i) // generic parameters and signatures
            } else if c == UInt8(ascii: "[") {
                let end = skipGroup(s, from: i)
                out += s[i..<end]
                i = end
            } else if c == UInt8(ascii: "(") {
                let end = skipGroup(s, from: i)
                if i > s.startIndex, s[i - 1] != UInt8(ascii: " ") || isFixity(s[..<i]) {
                    labels(s[(i + 1)..<max(i + 1, end - 1)], into: &out)
                    return // what follows is effects and the result type
                }
                out += s[i..<end] // a type, as in "outlined copy of (…)"
                i = end
            } else if c == UInt8(ascii: " "), s[i...].starts(with: " : ".utf8) {
                return // an accessor's or variable's type
            } else {
                out.append(c)
                i += 1
            }
        }
    }

    /// `label: T, _: U, V` → `(label:_:_:)`.
    private static func labels(_ list: ArraySlice<UInt8>, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "("))
        for item in splitTopLevel(list) {
            var j = item.startIndex
            while j < item.endIndex, isIdentifierByte(item[j]) { j += 1 }
            let isLabel = j > item.startIndex && item[j...].starts(with: ": ".utf8)
            out += isLabel ? Array(item[..<j]) : [UInt8(ascii: "_")]
            out.append(UInt8(ascii: ":"))
        }
        out.append(UInt8(ascii: ")"))
    }

    /// `requirement(labels:)` of `Module.Protocol.requirement(labels:)`,
    /// `subscript.getter` of `Module.Protocol.subscript.getter`.
    private static func member(of entity: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let name = entity[..<(entity.firstIndex(of: UInt8(ascii: "(")) ?? entity.endIndex)]
        guard var dot = name.lastIndex(of: UInt8(ascii: ".")) else { return entity }
        // An operator's own dots (`...<`), and an accessor's subject (`value.getter`).
        while dot > name.startIndex, name[dot - 1] == UInt8(ascii: ".") { dot -= 1 }
        let last = name[(dot + 1)...]
        let accessors = ["getter", "setter", "modify", "read", "unsafeAddressor", "unsafeMutableAddressor", "willset", "didset"]
        if accessors.contains(where: { last.elementsEqual($0.utf8) }),
           let previous = name[..<dot].lastIndex(of: UInt8(ascii: ".")) {
            return entity[(previous + 1)...]
        }
        return entity[(dot + 1)...]
    }

    /// The type a witness is for, without generic arguments or protocol.
    private static func conformingType(_ s: ArraySlice<UInt8>, into out: inout [UInt8]) {
        var type: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex, !s[i...].starts(with: " : ".utf8) {
            if s[i] == UInt8(ascii: "<") {
                i = skipGroup(s, from: i) // generic arguments, and a leading `< where …>`
            } else {
                type.append(s[i])
                i += 1
            }
        }
        out += trimmed(type[...])
    }

    // MARK: - Cleaning

    /// Drops ` with unmangled suffix "…"`.
    private static func removingUnmangledSuffix(_ s: [UInt8]) -> [UInt8] {
        guard let at = find(" with unmangled suffix ", in: s[...]) else { return s }
        return Array(s[..<at])
    }

    /// Drops `(extension in M):` and turns `(name in _0123ABCD)` (a private
    /// discriminator) into `name`.
    private static func removingContextNoise(_ s: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            if s[i] == UInt8(ascii: "("), let close = s[i...].firstIndex(of: UInt8(ascii: ")")) {
                let inner = s[(i + 1)..<close]
                if inner.starts(with: "extension in ".utf8), close + 1 < s.count, s[close + 1] == UInt8(ascii: ":") {
                    i = close + 2
                    continue
                }
                if let split = find(" in _", in: inner), !inner[..<split].contains(UInt8(ascii: " ")),
                   !inner[(split + 5)...].contains(UInt8(ascii: " ")), split > inner.startIndex {
                    out += inner[..<split]
                    i = close + 1
                    continue
                }
            }
            out.append(s[i])
            i += 1
        }
        return out
    }

    // MARK: - Scanning

    /// The index just past the group opened at `start` (`(`, `[` or `<`),
    /// counting every kind of bracket; `->` is an arrow, not a bracket.
    /// Unbalanced input ends the group at the end.
    private static func skipGroup(_ s: ArraySlice<UInt8>, from start: Int, anglesOnly: Bool = false) -> Int {
        var depth = 0
        var i = start
        while i < s.endIndex {
            let c = s[i]
            if c == UInt8(ascii: "<") || (!anglesOnly && (c == UInt8(ascii: "(") || c == UInt8(ascii: "["))) {
                depth += 1
            } else if (c == UInt8(ascii: ">") && !isArrow(s, i))
                        || (!anglesOnly && (c == UInt8(ascii: ")") || c == UInt8(ascii: "]"))) {
                depth -= 1
                if depth <= 0 { return i + 1 }
            }
            i += 1
        }
        return s.endIndex
    }

    /// Items of a comma-separated list, split outside brackets.
    private static func splitTopLevel(_ s: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var items: [ArraySlice<UInt8>] = []
        var depth = 0
        var start = s.startIndex
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if c == UInt8(ascii: "(") || c == UInt8(ascii: "[") || c == UInt8(ascii: "<") { depth += 1 }
            if c == UInt8(ascii: ")") || c == UInt8(ascii: "]") || (c == UInt8(ascii: ">") && !isArrow(s, i)) {
                depth -= 1
            }
            if c == UInt8(ascii: ","), depth == 0 {
                items.append(trimmed(s[start..<i]))
                start = i + 1
            }
            i += 1
        }
        let last = trimmed(s[start..<s.endIndex])
        if !last.isEmpty || !items.isEmpty { items.append(last) }
        return items
    }

    private static func trimmed(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var s = s
        while s.first == UInt8(ascii: " ") { s = s.dropFirst() }
        while s.last == UInt8(ascii: " ") { s = s.dropLast() }
        return s
    }

    private static func find(_ needle: String, in s: ArraySlice<UInt8>) -> Int? {
        let n = Array(needle.utf8)
        guard let first = n.first, s.count >= n.count else { return nil }
        var i = s.startIndex
        while i <= s.endIndex - n.count {
            if s[i] == first, s[i..<(i + n.count)].elementsEqual(n) { return i }
            i += 1
        }
        return nil
    }

    private static func isArrow(_ s: ArraySlice<UInt8>, _ i: Int) -> Bool {
        i > s.startIndex && s[i - 1] == UInt8(ascii: "-")
    }

    private static func isFixity(_ s: ArraySlice<UInt8>) -> Bool {
        s.reversed().starts(with: "xifni".utf8) || s.reversed().starts(with: "xiferp".utf8)
            || s.reversed().starts(with: "xiftsop".utf8)
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    private static func isIdentifierByte(_ c: UInt8) -> Bool {
        isDigit(c) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || c == UInt8(ascii: "_") || c >= 0x80 || c == UInt8(ascii: "`")
    }

    private static func isOperatorHead(_ c: UInt8) -> Bool {
        "/=-+!*%<>&|^~?.".utf8.contains(c)
    }
}
