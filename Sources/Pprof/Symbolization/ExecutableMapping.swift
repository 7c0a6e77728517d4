/// An executable mapping of /proc/self/maps.
struct ExecutableMapping: Sendable, Hashable {
    var start: UInt64        // memory_start
    var limit: UInt64        // memory_limit (exclusive)
    var fileOffset: UInt64
    var path: String         // as in /proc/self/maps, trailing " (deleted)" stripped; "[vdso]" kept
    var buildID: String      // lowercase hex of the ELF NT_GNU_BUILD_ID note, "" if none
}

/// One executable line of /proc/self/maps, before its build id is known.
struct ProcMapsEntry: Hashable {
    var start: UInt64
    var limit: UInt64
    var fileOffset: UInt64
    var device: String
    var inode: UInt64
    var path: String

    /// Parses the executable lines of a maps file, in file order, the way
    /// Go's runtime/pprof does: "x" permission only, anonymous inode-0 lines
    /// without a name skipped, " (deleted)" stripped from paths.
    static func parseExecutable(_ text: [UInt8]) -> [ProcMapsEntry] {
        var entries: [ProcMapsEntry] = []
        for line in text.split(separator: UInt8(ascii: "\n")) {
            if let entry = parseLine(line) { entries.append(entry) }
        }
        return entries
    }

    /// "start-limit perms offset dev inode   path", where the path may
    /// contain spaces and runs to the end of the line.
    private static func parseLine(_ line: ArraySlice<UInt8>) -> ProcMapsEntry? {
        var fields: [ArraySlice<UInt8>] = []
        var rest = line[...]
        for index in 0..<5 {
            rest = rest.drop { $0 == UInt8(ascii: " ") }
            let field = rest.prefix { $0 != UInt8(ascii: " ") }
            guard !field.isEmpty else { return nil }
            // The permissions ("x" only): most lines are not executable (with
            // many threads, their stacks and guard pages), dropped before
            // anything else is parsed.
            if index == 1 && (field.count < 3 || field[field.startIndex + 2] != UInt8(ascii: "x")) { return nil }
            fields.append(field)
            rest = rest.dropFirst(field.count)
        }
        let path = strippingDeletedSuffix(String(decoding: rest.drop { $0 == UInt8(ascii: " ") }, as: UTF8.self))
        let range = fields[0].split(separator: UInt8(ascii: "-"))
        guard range.count == 2,
              let start = UInt64(String(decoding: range[0], as: UTF8.self), radix: 16),
              let limit = UInt64(String(decoding: range[1], as: UTF8.self), radix: 16),
              let offset = UInt64(String(decoding: fields[2], as: UTF8.self), radix: 16),
              let inode = UInt64(String(decoding: fields[4], as: UTF8.self))
        else { return nil }
        if inode == 0 && path.isEmpty { return nil }
        return ProcMapsEntry(start: start, limit: limit, fileOffset: offset,
                             device: String(decoding: fields[3], as: UTF8.self), inode: inode, path: path)
    }
}
