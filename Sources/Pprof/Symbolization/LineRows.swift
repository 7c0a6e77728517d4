/// The rows of a `LineTable`, stored compactly: 10 bytes a row where the
/// naive layout takes 16. An image has hundreds of thousands of rows and
/// every loaded object's table is kept, so this is most of the line
/// tables' memory.
///
/// Addresses are kept as 32-bit offsets from the first row's (an image's
/// code spans far less than 4 GiB; rows beyond that are cut off and end in a
/// gap), file indexes in 16 bits while the table has fewer than 65535 paths.
struct LineRows: Sendable {
    /// A file index meaning "no row": nothing is known from here on.
    static let gap = UInt32.max

    private enum Files: Sendable {
        case narrow([UInt16]) // gap: UInt16.max
        case wide([UInt32])
    }

    private(set) var base: UInt64 = 0
    private var offsets: [UInt32] = []
    private var lines: [UInt32] = []
    private var files = Files.narrow([])

    init() {}

    /// Rows sorted by address; `files` uses `LineRows.gap` for gaps.
    init(addresses: [UInt64], files fileIndexes: [UInt32], lines lineNumbers: [UInt32], pathCount: Int) {
        base = addresses.first ?? 0
        let base = base
        var count = addresses.firstIndex { $0 &- base > UInt64(UInt32.max - 1) } ?? addresses.count
        var offsets = addresses[..<count].map { UInt32($0 &- base) }
        var lines = Array(lineNumbers[..<count])
        var kept = Array(fileIndexes[..<count])
        if count < addresses.count { // cut: nothing is known past the last kept row
            offsets.append(UInt32.max)
            lines.append(0)
            kept.append(LineRows.gap)
            count += 1
        }
        self.offsets = offsets
        self.lines = lines
        if pathCount < Int(UInt16.max) {
            files = .narrow(kept.map { $0 == LineRows.gap ? UInt16.max : UInt16(truncatingIfNeeded: $0) })
        } else {
            files = .wide(kept)
        }
    }

    var count: Int { offsets.count }

    var memoryBytes: Int {
        let fileBytes = switch files {
        case .narrow(let narrow): narrow.capacity * 2
        case .wide(let wide): wide.capacity * 4
        }
        return offsets.capacity * 4 + lines.capacity * 4 + fileBytes
    }

    /// Row `index` as it was given (file `LineRows.gap` for a gap).
    func row(_ index: Int) -> (address: UInt64, file: UInt32, line: UInt32) {
        let file: UInt32 = switch files {
        case .narrow(let narrow): narrow[index] == UInt16.max ? LineRows.gap : UInt32(narrow[index])
        case .wide(let wide): wide[index]
        }
        return (base &+ UInt64(offsets[index]), file, lines[index])
    }

    /// File index and line of the row covering `address`; nil before the
    /// first row or in a gap.
    func lookup(_ address: UInt64) -> (file: Int, line: Int)? {
        guard address >= base else { return nil }
        let offset = UInt32(min(address - base, UInt64(UInt32.max)))
        var low = 0, high = offsets.count
        while low < high {
            let middle = (low + high) / 2
            if offsets[middle] <= offset { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        let file: Int
        switch files {
        case .narrow(let narrow):
            guard narrow[low - 1] != UInt16.max else { return nil }
            file = Int(narrow[low - 1])
        case .wide(let wide):
            guard wide[low - 1] != LineRows.gap else { return nil }
            file = Int(wide[low - 1])
        }
        return (file, Int(lines[low - 1]))
    }
}
