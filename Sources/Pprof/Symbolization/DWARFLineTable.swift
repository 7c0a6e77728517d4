/// The sections a line table needs. `line` holds the line-number programs;
/// DWARF 5 file tables point into `lineStr` (.debug_line_str) and `str`
/// (.debug_str). Missing sections are empty buffers.
struct DWARFLineSections {
    var line: UnsafeRawBufferPointer
    var lineStr = UnsafeRawBufferPointer(start: nil, count: 0)
    var str = UnsafeRawBufferPointer(start: nil, count: 0)
}

/// Source file and line for the addresses of one image, from every
/// line-number program of its .debug_line, indexed once.
///
/// Rows are kept sorted by address (compactly, `LineRows`): row i covers
/// [address i, address i + 1) with file paths[file i] and line i; a row
/// whose file is `LineTable.gap` marks where a sequence ends
/// and nothing is known until the next row. Consecutive rows with the same
/// file and line are merged, since columns and statement flags are not kept.
struct LineTable: Sendable {
    static let gap = LineRows.gap

    private var rows = LineRows()
    /// Deduplicated full paths.
    private(set) var paths: [String] = []

    static let empty = LineTable()

    var rowCount: Int { rows.count }

    /// The rows' columns, expanded (for tests; lookups use `lookup`).
    var addresses: [UInt64] { (0..<rows.count).map { rows.row($0).address } }
    var files: [UInt32] { (0..<rows.count).map { rows.row($0).file } }
    var lines: [UInt32] { (0..<rows.count).map { rows.row($0).line } }

    /// Bytes held by the rows and path strings (not counting allocator slack).
    var memoryBytes: Int {
        rows.memoryBytes + paths.capacity * MemoryLayout<String>.stride + paths.reduce(0) { $0 + $1.utf8.count }
    }

    /// File and line for an ELF virtual address, nil outside every sequence.
    func lookup(_ address: UInt64) -> (file: String, line: Int)? {
        guard let row = rows.lookup(address), row.file < paths.count else { return nil }
        return (paths[row.file], row.line)
    }

    /// Parses all line-number programs (DWARF 2 to 5) of `sections.line`.
    /// A unit that is malformed contributes nothing; the others still count.
    /// `keepSequence` sees each sequence's start address and may drop it
    /// (sequences of functions the linker discarded start at 0 or -1).
    /// `compilationDirectories` (by unit offset in .debug_line, from the
    /// units' DW_AT_comp_dir) anchors relative paths of DWARF 2-4 programs.
    init(sections: DWARFLineSections, compilationDirectories: [Int: [UInt8]] = [:],
         keepSequence: (UInt64) -> Bool = { _ in true }) {
        var builder = LineTableBuilder()
        var offset = 0
        while offset < sections.line.count,
              let end = Self.readProgram(at: offset, sections: sections,
                                         compilationDirectory: compilationDirectories[offset] ?? [],
                                         keepSequence: keepSequence, into: &builder) {
            offset = end
        }
        self = builder.finish()
    }

    /// The rows of the line-number programs at `programs` (offsets of
    /// their unit headers in `sections.line`, with their units'
    /// DW_AT_comp_dir) only, as the whole-section initializer gives them
    /// for their addresses: a compile unit's, read on first need.
    init(sections: DWARFLineSections, programs: [(offset: Int, compilationDirectory: [UInt8])],
         keepSequence: (UInt64) -> Bool) {
        var builder = LineTableBuilder()
        for program in programs where program.offset < sections.line.count {
            _ = Self.readProgram(at: program.offset, sections: sections, compilationDirectory: program.compilationDirectory,
                                 keepSequence: keepSequence, into: &builder)
        }
        self = builder.finish()
    }

    /// Runs the program whose unit header is at `unitStart`; returns where
    /// the next unit starts, nil if it cannot be found. A malformed program
    /// contributes nothing.
    static func readProgram<Sink: LineRowSink>(at unitStart: Int, sections: DWARFLineSections, compilationDirectory: [UInt8],
                                               keepSequence: (UInt64) -> Bool, into builder: inout Sink) -> Int? {
        var cursor = DWARFCursor(sections.line, offset: unitStart)
        guard let (length, offsetSize) = try? cursor.initialLength(),
              length <= UInt64(cursor.remaining)
        else { return nil } // the next unit cannot be found: stop
        let unitEnd = cursor.offset + Int(length)
        builder.beginUnit()
        do {
            var program = LineProgram()
            program.offsetSize = offsetSize
            program.compilationDirectory = compilationDirectory
            var header = DWARFCursor(sections.line, offset: cursor.offset, limit: unitEnd)
            let programStart = try program.readHeader(&header)
            var body = DWARFCursor(sections.line, offset: programStart, limit: unitEnd)
            try program.execute(&body, sections: sections, builder: &builder, keepSequence: keepSequence)
            builder.commitUnit()
        } catch {
            builder.abandonUnit()
        }
        return unitEnd
    }

    fileprivate init() {}

    /// Rows sorted by address, as `LineTableBuilder.finish()` gives them.
    init(addresses: [UInt64], files: [UInt32], lines: [UInt32], paths: [String]) {
        rows = LineRows(addresses: addresses, files: files, lines: lines, pathCount: paths.count)
        self.paths = paths
    }
}

/// Where a string of a file or directory entry lives; resolved only for
/// the entries rows actually use.
struct StringReference {
    enum Section: UInt8 { case none, line, lineStr, str }
    var section: Section
    var offset: UInt64

    static let none = StringReference(section: .none, offset: 0)
}

struct FileEntry {
    var name: StringReference
    var directory: UInt64
}

// DWARF constants (DWARF 5 spec, section 7.22 and 7.5.6).
private enum LineOpcode {
    static let extended: UInt8 = 0
    static let copy: UInt8 = 1, advancePC: UInt8 = 2, advanceLine: UInt8 = 3, setFile: UInt8 = 4
    static let setColumn: UInt8 = 5, negateStmt: UInt8 = 6, setBasicBlock: UInt8 = 7, constAddPC: UInt8 = 8
    static let fixedAdvancePC: UInt8 = 9, setPrologueEnd: UInt8 = 10, setEpilogueBegin: UInt8 = 11, setISA: UInt8 = 12
    // Extended opcodes.
    static let endSequence: UInt8 = 1, setAddress: UInt8 = 2, defineFile: UInt8 = 3, setDiscriminator: UInt8 = 4
}

private enum LineContent {
    static let path: UInt64 = 1, directoryIndex: UInt64 = 2
}

enum DWARFForm {
    static let addr: UInt64 = 0x01, block2: UInt64 = 0x03, block4: UInt64 = 0x04
    static let data2: UInt64 = 0x05, data4: UInt64 = 0x06, data8: UInt64 = 0x07, string: UInt64 = 0x08
    static let block: UInt64 = 0x09, block1: UInt64 = 0x0a, data1: UInt64 = 0x0b, flag: UInt64 = 0x0c
    static let sdata: UInt64 = 0x0d, strp: UInt64 = 0x0e, udata: UInt64 = 0x0f, refAddr: UInt64 = 0x10
    static let ref1: UInt64 = 0x11, ref2: UInt64 = 0x12, ref4: UInt64 = 0x13, ref8: UInt64 = 0x14
    static let refUdata: UInt64 = 0x15, indirect: UInt64 = 0x16, secOffset: UInt64 = 0x17
    static let exprloc: UInt64 = 0x18, flagPresent: UInt64 = 0x19, strx: UInt64 = 0x1a, addrx: UInt64 = 0x1b
    static let refSup4: UInt64 = 0x1c, strpSup: UInt64 = 0x1d, data16: UInt64 = 0x1e, lineStrp: UInt64 = 0x1f
    static let refSig8: UInt64 = 0x20, implicitConst: UInt64 = 0x21, loclistx: UInt64 = 0x22
    static let rnglistx: UInt64 = 0x23, refSup8: UInt64 = 0x24
    static let strx1: UInt64 = 0x25, strx2: UInt64 = 0x26, strx3: UInt64 = 0x27, strx4: UInt64 = 0x28
    static let addrx1: UInt64 = 0x29, addrx2: UInt64 = 0x2a, addrx3: UInt64 = 0x2b, addrx4: UInt64 = 0x2c
    // GNU extensions (split DWARF, dwz): sized, but pointing elsewhere.
    static let gnuAddrIndex: UInt64 = 0x1f01, gnuStrIndex: UInt64 = 0x1f02
    static let gnuRefAlt: UInt64 = 0x1f20, gnuStrpAlt: UInt64 = 0x1f21
}

/// One line-number program: its header, file table and state machine.
struct LineProgram {
    var version: UInt16 = 0
    var offsetSize = 4
    var minimumInstructionLength: UInt64 = 1
    var maximumOperationsPerInstruction: UInt64 = 1
    var defaultIsStmt = true
    var lineBase: Int64 = 0
    var lineRange: UInt64 = 1
    var opcodeBase: UInt8 = 1
    /// Offset of standard_opcode_lengths in .debug_line.
    var opcodeLengthsOffset = 0
    var directories: [StringReference] = []
    var fileEntries: [FileEntry] = []
    /// Path-table index per file entry, filled in on first use.
    var resolvedFiles: [UInt32?] = []
    /// DW_AT_comp_dir of the unit, for DWARF 2-4 (DWARF 5 has directory 0).
    var compilationDirectory: [UInt8] = []

    /// The header of the program at `offset` in .debug_line (for file
    /// names of DW_AT_call_file), nil if malformed.
    static func header(at offset: UInt64, in line: UnsafeRawBufferPointer,
                       compilationDirectory: [UInt8]) -> LineProgram? {
        guard offset < UInt64(line.count) else { return nil }
        var cursor = DWARFCursor(line, offset: Int(offset))
        guard let (length, offsetSize) = try? cursor.initialLength(), length <= UInt64(cursor.remaining) else {
            return nil
        }
        var program = LineProgram()
        program.offsetSize = offsetSize
        program.compilationDirectory = compilationDirectory
        var header = DWARFCursor(line, offset: cursor.offset, limit: cursor.offset + Int(length))
        guard (try? program.readHeader(&header)) != nil else { return nil }
        return program
    }

    /// Reads the header up to the program; returns where the program starts.
    mutating func readHeader(_ cursor: inout DWARFCursor) throws(MalformedDWARF) -> Int {
        version = try cursor.fixed(UInt16.self)
        guard (2...5).contains(version) else { throw MalformedDWARF() }
        if version >= 5 {
            _ = try cursor.u8() // address_size: set_address carries its own length
            _ = try cursor.u8() // segment_selector_size
        }
        let headerLength = try cursor.sectionOffset(size: offsetSize)
        guard headerLength <= UInt64(cursor.remaining) else { throw MalformedDWARF() }
        let programStart = cursor.offset + Int(headerLength)
        // The header's tables must end where the program starts.
        var header = DWARFCursor(cursor.bytes, offset: cursor.offset, limit: programStart)
        minimumInstructionLength = UInt64(try header.u8())
        if version >= 4 {
            maximumOperationsPerInstruction = UInt64(try header.u8())
            if maximumOperationsPerInstruction == 0 { throw MalformedDWARF() }
        }
        defaultIsStmt = try header.u8() != 0
        lineBase = Int64(Int8(bitPattern: try header.u8()))
        lineRange = UInt64(try header.u8())
        guard lineRange != 0 else { throw MalformedDWARF() }
        opcodeBase = try header.u8()
        guard opcodeBase >= 1 else { throw MalformedDWARF() }
        opcodeLengthsOffset = header.offset
        try header.skip(UInt64(opcodeBase - 1))
        if version >= 5 {
            directories = try readEntries(&header).map(\.name)
            fileEntries = try readEntries(&header)
        } else {
            while true {
                let start = try header.skipCString()
                if header.offset - start == 1 { break } // the empty string ends the list
                directories.append(StringReference(section: .line, offset: UInt64(start)))
            }
            while true {
                let start = try header.skipCString()
                if header.offset - start == 1 { break }
                let directory = try header.uleb()
                _ = try header.uleb() // modification time
                _ = try header.uleb() // length
                fileEntries.append(FileEntry(name: StringReference(section: .line, offset: UInt64(start)),
                                             directory: directory))
            }
        }
        resolvedFiles = Array(repeating: nil, count: fileEntries.count)
        return programStart
    }

    /// A DWARF 5 directory or file-name table: a format (content type and
    /// form pairs), then the entries.
    func readEntries(_ cursor: inout DWARFCursor) throws(MalformedDWARF) -> [FileEntry] {
        let formatCount = Int(try cursor.u8())
        var format: [(content: UInt64, form: UInt64)] = []
        for _ in 0..<formatCount { format.append((try cursor.uleb(), try cursor.uleb())) }
        let count = try cursor.uleb()
        // Each entry takes at least a byte unless the format is empty.
        guard count <= UInt64(cursor.remaining) || (formatCount == 0 && count <= 1 << 16) else { throw MalformedDWARF() }
        var entries: [FileEntry] = []
        entries.reserveCapacity(Int(count))
        for _ in 0..<count {
            var entry = FileEntry(name: .none, directory: 0)
            for (content, form) in format {
                let value = try readForm(form, &cursor)
                switch content {
                case LineContent.path: entry.name = value.string
                case LineContent.directoryIndex: entry.directory = value.number
                default: break // timestamp, size, MD5, vendor content
                }
            }
            entries.append(entry)
        }
        return entries
    }

    /// The forms DWARF 5 allows in line-table entries (and a few more that
    /// have a known size). Index forms (strx) need the unit's
    /// str_offsets_base from .debug_info and are read as "no string".
    func readForm(_ form: UInt64, _ cursor: inout DWARFCursor) throws(MalformedDWARF) -> (string: StringReference, number: UInt64) {
        switch form {
        case DWARFForm.string:
            return (StringReference(section: .line, offset: UInt64(try cursor.skipCString())), 0)
        case DWARFForm.lineStrp:
            return (StringReference(section: .lineStr, offset: try cursor.sectionOffset(size: offsetSize)), 0)
        case DWARFForm.strp:
            return (StringReference(section: .str, offset: try cursor.sectionOffset(size: offsetSize)), 0)
        case DWARFForm.strpSup, DWARFForm.secOffset:
            _ = try cursor.sectionOffset(size: offsetSize)
        case DWARFForm.udata: return (.none, try cursor.uleb())
        case DWARFForm.sdata: return (.none, UInt64(bitPattern: try cursor.sleb()))
        case DWARFForm.data1, DWARFForm.flag, DWARFForm.strx1: return (.none, try cursor.unsigned(size: 1))
        case DWARFForm.data2, DWARFForm.strx2: return (.none, try cursor.unsigned(size: 2))
        case DWARFForm.strx3: _ = try cursor.unsigned(size: 3)
        case DWARFForm.data4, DWARFForm.strx4: return (.none, try cursor.unsigned(size: 4))
        case DWARFForm.data8: return (.none, try cursor.unsigned(size: 8))
        case DWARFForm.data16: try cursor.skip(16)
        case DWARFForm.strx: _ = try cursor.uleb()
        case DWARFForm.block: try cursor.skip(try cursor.uleb())
        case DWARFForm.block1: try cursor.skip(try cursor.unsigned(size: 1))
        case DWARFForm.block2: try cursor.skip(try cursor.unsigned(size: 2))
        case DWARFForm.block4: try cursor.skip(try cursor.unsigned(size: 4))
        default: throw MalformedDWARF() // unknown size: the rest cannot be read
        }
        return (.none, 0)
    }

    // MARK: State machine

    mutating func execute<Sink: LineRowSink>(_ cursor: inout DWARFCursor, sections: DWARFLineSections,
                                             builder: inout Sink, keepSequence: (UInt64) -> Bool) throws(MalformedDWARF) {
        var address: UInt64 = 0
        var opIndex: UInt64 = 0
        var file: UInt64 = 1
        var line: Int64 = 1
        var currentFile: (register: UInt64, index: UInt32)?
        let maxOps = maximumOperationsPerInstruction
        let minLength = minimumInstructionLength
        let opcodeBase = self.opcodeBase
        let lineBase = self.lineBase
        let lineRange = self.lineRange

        func advance(_ operationAdvance: UInt64) {
            if maxOps == 1 {
                address &+= minLength &* operationAdvance
            } else {
                let total = opIndex &+ operationAdvance
                address &+= minLength &* (total / maxOps)
                opIndex = total % maxOps
            }
        }

        func emitRow() {
            let index: UInt32
            if !Sink.wantsPaths {
                index = 0
            } else if let currentFile, currentFile.register == file {
                index = currentFile.index
            } else {
                index = resolveFile(file, sections: sections, builder: &builder)
                currentFile = (file, index)
            }
            let rowLine = line >= 0 && line <= Int64(UInt32.max) ? UInt32(line) : 0
            builder.appendRow(address: address, file: index, line: rowLine)
        }

        func reset() {
            address = 0
            opIndex = 0
            file = 1
            line = 1
        }

        while !cursor.isAtEnd {
            let opcode = try cursor.u8()
            if opcode >= opcodeBase {
                let adjusted = UInt64(opcode - opcodeBase)
                advance(adjusted / lineRange)
                line &+= lineBase &+ Int64(adjusted % lineRange)
                emitRow()
                continue
            }
            switch opcode {
            case LineOpcode.extended:
                let length = try cursor.uleb()
                guard length >= 1, length <= UInt64(cursor.remaining) else { throw MalformedDWARF() }
                let end = cursor.offset + Int(length)
                let subOpcode = try cursor.u8()
                switch subOpcode {
                case LineOpcode.endSequence:
                    builder.endSequence(at: address, keep: keepSequence)
                    reset()
                case LineOpcode.setAddress:
                    address = try cursor.unsigned(size: Int(length - 1))
                    opIndex = 0
                case LineOpcode.defineFile:
                    let start = try cursor.skipCString()
                    let directory = try cursor.uleb()
                    fileEntries.append(FileEntry(name: StringReference(section: .line, offset: UInt64(start)),
                                                 directory: directory))
                    resolvedFiles.append(nil)
                default:
                    break // set_discriminator and vendor extensions: nothing we keep
                }
                guard cursor.offset <= end else { throw MalformedDWARF() }
                cursor.offset = end
            case LineOpcode.copy:
                emitRow()
            case LineOpcode.advancePC:
                advance(try cursor.uleb())
            case LineOpcode.advanceLine:
                line &+= try cursor.sleb()
            case LineOpcode.setFile:
                file = try cursor.uleb()
            case LineOpcode.setColumn, LineOpcode.setISA:
                _ = try cursor.uleb()
            case LineOpcode.negateStmt, LineOpcode.setBasicBlock, LineOpcode.setPrologueEnd, LineOpcode.setEpilogueBegin:
                break // flags that do not change file or line
            case LineOpcode.constAddPC:
                advance(UInt64(255 - opcodeBase) / lineRange)
            case LineOpcode.fixedAdvancePC:
                address &+= UInt64(try cursor.fixed(UInt16.self))
                opIndex = 0
            default:
                // An opcode this reader does not know, below opcode_base:
                // the header says how many LEB128 operands to skip.
                let count = sections.line.load(fromByteOffset: opcodeLengthsOffset + Int(opcode) - 1, as: UInt8.self)
                for _ in 0..<count { _ = try cursor.uleb() }
            }
        }
    }

    // MARK: Paths

    /// The path-table index of file register value `file`. DWARF 5 numbers
    /// files from 0, earlier versions from 1; an unknown file maps to "".
    mutating func resolveFile<Sink: LineRowSink>(_ file: UInt64, sections: DWARFLineSections, builder: inout Sink) -> UInt32 {
        guard let entryIndex = entryIndex(ofFile: file) else { return builder.path([]) }
        if let known = resolvedFiles[entryIndex] { return known }
        let index = builder.path(fullPath(of: fileEntries[entryIndex], sections: sections))
        resolvedFiles[entryIndex] = index
        return index
    }

    func entryIndex(ofFile file: UInt64) -> Int? {
        let entryIndex: UInt64 = version >= 5 ? file : file &- 1
        return entryIndex < UInt64(fileEntries.count) ? Int(entryIndex) : nil
    }

    /// The full path of file number `file` ("" if there is no such file).
    func path(ofFile file: UInt64, sections: DWARFLineSections) -> [UInt8] {
        guard let entryIndex = entryIndex(ofFile: file) else { return [] }
        return fullPath(of: fileEntries[entryIndex], sections: sections)
    }

    /// Joins directory and name as DWARF says: an absolute name stands
    /// alone; a relative directory is relative to the compilation directory,
    /// which DWARF 5 stores as directory 0 and earlier versions leave to the
    /// unit's DW_AT_comp_dir (if known; else the path stays relative).
    /// Names in angle brackets, like Swift's <compiler-generated>, are not paths.
    func fullPath(of entry: FileEntry, sections: DWARFLineSections) -> [UInt8] {
        let name = bytes(of: entry.name, sections: sections)
        if name.first == UInt8(ascii: "/") || name.first == UInt8(ascii: "<") && name.last == UInt8(ascii: ">") {
            return name
        }
        var directory: [UInt8] = []
        if version >= 5 {
            if entry.directory < UInt64(directories.count) {
                directory = bytes(of: directories[Int(entry.directory)], sections: sections)
                if entry.directory != 0, directory.first != UInt8(ascii: "/"), let base = directories.first {
                    directory = joined(bytes(of: base, sections: sections), directory)
                }
            }
        } else {
            if entry.directory >= 1 && entry.directory <= UInt64(directories.count) {
                directory = bytes(of: directories[Int(entry.directory - 1)], sections: sections)
            }
            if directory.first != UInt8(ascii: "/") {
                directory = joined(compilationDirectory, directory)
            }
        }
        return joined(directory, name)
    }

    private func joined(_ directory: [UInt8], _ name: [UInt8]) -> [UInt8] {
        if directory.isEmpty { return name }
        if name.isEmpty { return directory }
        if name.first == UInt8(ascii: "/") { return name }
        return directory.last == UInt8(ascii: "/") ? directory + name : directory + [UInt8(ascii: "/")] + name
    }

    private func bytes(of reference: StringReference, sections: DWARFLineSections) -> [UInt8] {
        let section: UnsafeRawBufferPointer
        switch reference.section {
        case .none: return []
        case .line: section = sections.line
        case .lineStr: section = sections.lineStr
        case .str: section = sections.str
        }
        return dwarfCString(in: section, at: reference.offset).map { Array($0) } ?? []
    }
}
