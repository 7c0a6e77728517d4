/// The rows of a `LineTable`, stored compactly: 8 bytes a row where the
/// naive layout takes 16. An image has hundreds of thousands of rows and
/// every loaded object's table is kept, so this is most of the line
/// tables' memory.
///
/// Addresses are kept as 32-bit offsets from the first row's (an image's
/// code spans far less than 4 GiB; rows beyond that are cut off and end in a
/// gap). File index and line share one 32-bit word while both fit 16 bits
/// (the usual case); otherwise each has its own.
struct LineRows: Sendable {
    /// A file index meaning "no row": nothing is known from here on.
    static let gap = UInt32.max

    private enum Columns: Sendable {
        case packed([UInt32])               // file << 16 | line; file 0xFFFF: gap
        case wide(files: [UInt32], lines: [UInt32])
    }

    private(set) var base: UInt64 = 0
    private var offsets: [UInt32] = []
    private var columns = Columns.packed([])

    init() {}

    /// Rows sorted by address; `files` uses `LineRows.gap` for gaps.
    init(addresses: [UInt64], files fileIndexes: [UInt32], lines lineNumbers: [UInt32], pathCount: Int) {
        base = addresses.first ?? 0
        let base = base
        let count = addresses.firstIndex { $0 &- base > UInt64(UInt32.max - 1) } ?? addresses.count
        var offsets = addresses[..<count].map { UInt32($0 &- base) }
        var files = Array(fileIndexes[..<count]), lines = Array(lineNumbers[..<count])
        if count < addresses.count { // cut: nothing is known past the last kept row
            offsets.append(UInt32.max)
            files.append(LineRows.gap)
            lines.append(0)
        }
        self.offsets = offsets
        if pathCount < 0xFFFF, lines.allSatisfy({ $0 <= 0xFFFF }) {
            columns = .packed(zip(files, lines).map { file, line in
                (file == LineRows.gap ? 0xFFFF : file) << 16 | line
            })
        } else {
            columns = .wide(files: files, lines: lines)
        }
    }

    var count: Int { offsets.count }

    var memoryBytes: Int {
        let columnBytes = switch columns {
        case .packed(let packed): packed.capacity * 4
        case .wide(let files, let lines): files.capacity * 4 + lines.capacity * 4
        }
        return offsets.capacity * 4 + columnBytes
    }

    /// Row `index` as it was given (file `LineRows.gap` for a gap).
    func row(_ index: Int) -> (address: UInt64, file: UInt32, line: UInt32) {
        let address = base &+ UInt64(offsets[index])
        switch columns {
        case .packed(let packed):
            let file = packed[index] >> 16
            return (address, file == 0xFFFF ? LineRows.gap : file, packed[index] & 0xFFFF)
        case .wide(let files, let lines):
            return (address, files[index], lines[index])
        }
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
        let row = row(low - 1)
        return row.file == LineRows.gap ? nil : (Int(row.file), Int(row.line))
    }
}
