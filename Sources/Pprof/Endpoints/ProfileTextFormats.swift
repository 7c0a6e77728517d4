/// `?format=folded` and `?format=json`: a profile as text, for tools that do
/// not read pprof's protobuf. Folded is Brendan Gregg's collapsed stacks
/// (`root;caller;leaf value` per line) that flamegraph.pl, inferno and
/// speedscope open; JSON is what the built-in flame graph page (`/ui`) draws.
enum ProfileTextFormats {
    /// The response for `format`, or nil if the request asks for none.
    static func response(_ request: HTTPRequest, profile: @autoclosure () -> ProfileData,
                         symbols: some SymbolSource) -> HTTPResponse? {
        guard let format = request.queryValue("format"), !format.isEmpty else { return nil }
        if let refusal = invalidFormat(request) { return refusal }
        let stacks: NamedStacks
        do {
            stacks = try NamedStacks(profile(), symbols: symbols, sampleIndex: request.queryValue("sample_index"))
        } catch {
            return .pprofError(400, error.message)
        }
        if format == "folded" { return .text(folded(stacks)) }
        var response = HTTPResponse.text(json(stacks))
        response.headers[0].value = "application/json"
        return response
    }

    /// A 400 for a `format` that is not known; checked before a long profile starts.
    static func invalidFormat(_ request: HTTPRequest) -> HTTPResponse? {
        guard let format = request.queryValue("format"), !format.isEmpty, format != "folded", format != "json" else {
            return nil
        }
        return .pprofError(400, "unknown format \"\(format)\": use folded or json (or none for pprof's protobuf)")
    }

    /// One line per distinct stack, sorted, frames joined by `;`.
    static func folded(_ stacks: NamedStacks) -> String {
        // `;` separates frames and a line ends the sample: neither may appear in a name.
        let names = stacks.frames.map { frame in
            String(frame.name.map { $0 == ";" ? ":" : ($0 == "\n" || $0 == "\r" ? " " : $0) })
        }
        var lines = stacks.stacks.map { stack in
            stack.frames.map { names[$0] }.joined(separator: ";") + " \(stack.value)"
        }
        lines.sort()
        return lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
    }

    /// `{"sampleType":…, "sampleTypes":[…], "total":N, "comments":[…],
    /// "frames":[{"name","file","line"}…], "stacks":[{"frames":[root…leaf],"value":N}…]}`.
    static func json(_ stacks: NamedStacks) -> String {
        var out = "{\"sampleType\":" + valueType(stacks.sampleType)
        out += ",\"sampleTypes\":[" + stacks.sampleTypes.map(valueType).joined(separator: ",") + "]"
        out += ",\"total\":\(stacks.total)"
        out += ",\"comments\":[" + stacks.comments.map(quoted).joined(separator: ",") + "]"
        out += ",\"frames\":["
        out += stacks.frames.map { "{\"name\":\(quoted($0.name)),\"file\":\(quoted($0.file)),\"line\":\($0.line)}" }
            .joined(separator: ",")
        out += "],\"stacks\":["
        out += stacks.stacks.map { stack in
            "{\"frames\":[" + stack.frames.map(String.init).joined(separator: ",") + "],\"value\":\(stack.value)}"
        }.joined(separator: ",")
        return out + "]}\n"
    }

    private static func valueType(_ t: ValueType) -> String {
        "{\"type\":\(quoted(t.type)),\"unit\":\(quoted(t.unit))}"
    }

    /// A JSON string literal.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "<": out += "\\u003c" // harmless inside a page, should one ever embed it
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
