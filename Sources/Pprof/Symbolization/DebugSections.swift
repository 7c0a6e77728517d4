internal import CPprof
import Glibc

/// The bytes of one debug section: borrowed from the image, or for a
/// compressed section, decompressed into memory this object owns (freed
/// with it). Unchecked Sendable: the bytes are written only before the
/// object is handed to anyone (`init(zeroedCount:)` and its one writer),
/// read-only after.
final class DebugSectionData: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    private let owned: UnsafeMutableRawPointer?
    /// Anonymous pages this object maps (`init(zeroedCount:)`), and their length.
    private let mapped: UnsafeMutableRawPointer?
    private let mappedLength: Int

    /// The bytes were inflated into memory this object owns.
    var isOwned: Bool { owned != nil || mapped != nil }

    init(borrowing bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        owned = nil
        mapped = nil
        mappedLength = 0
    }

    private init(owning pointer: UnsafeMutablePointer<UInt8>, count: Int) {
        owned = UnsafeMutableRawPointer(pointer)
        bytes = UnsafeRawBufferPointer(start: pointer, count: count)
        mapped = nil
        mappedLength = 0
    }

    /// `count` zero bytes in fresh anonymous pages, written once through
    /// `writable` before the object is shared (`InflateIndex`); pages never
    /// written cost no memory. nil if the pages cannot be mapped.
    init?(zeroedCount count: Int) {
        guard count > 0,
              let pages = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              pages != UnsafeMutableRawPointer(bitPattern: -1) else { return nil }
        mapped = pages
        mappedLength = count
        owned = nil
        bytes = UnsafeRawBufferPointer(start: pages, count: count)
    }

    /// The mapped pages, for the one writer before the object is shared.
    var writable: UnsafeMutablePointer<UInt8>? { mapped?.assumingMemoryBound(to: UInt8.self) }

    deinit {
        free(owned)
        if let mapped { munmap(mapped, mappedLength) }
    }

    /// Inflates a zlib (or gzip) stream with the CPprof helpers; nil on any error.
    static func inflating(_ compressed: UnsafeRawBufferPointer, expectedSize: UInt64) -> DebugSectionData? {
        guard let base = compressed.baseAddress else { return nil }
        var out: UnsafeMutablePointer<UInt8>?
        var outLength = 0
        let rc = cpprof_gunzip(base.assumingMemoryBound(to: UInt8.self), compressed.count, &out, &outLength)
        guard rc == 0, let out else { return nil }
        guard UInt64(outLength) == expectedSize else {
            free(out)
            return nil
        }
        return DebugSectionData(owning: out, count: outLength)
    }
}

extension ELFImage {
    /// Section headers by name (the first of each name).
    func sectionsByName() -> [String: Elf64_Shdr] {
        let sections = sectionHeaders
        let namesIndex = Int(header.e_shstrndx)
        guard namesIndex > 0, namesIndex < sections.count else { return [:] }
        let names = sections[namesIndex]
        var result: [String: Elf64_Shdr] = [:]
        for section in sections where section.sh_name > 0 {
            guard UInt64(section.sh_name) < names.sh_size,
                  let name = cString(at: names.sh_offset &+ UInt64(section.sh_name)), result[name] == nil
            else { continue }
            result[name] = section
        }
        return result
    }

    /// A debug section's contents, e.g. ".debug_line". Sections compressed
    /// with zlib, either SHF_COMPRESSED (the current way) or the older
    /// .zdebug_ naming, are inflated; zstd-compressed ones are skipped.
    func debugSection(_ name: String, in sections: [String: Elf64_Shdr]) -> DebugSectionData? {
        if let section = sections[name], section.sh_type != SHT_NOBITS,
           let bytes = slice(at: section.sh_offset, count: section.sh_size),
           section.sh_flags & UInt64(SHF_COMPRESSED) == 0 {
            return DebugSectionData(borrowing: bytes)
        }
        guard let (stream, size) = zlibSection(name, in: sections) else { return nil }
        return DebugSectionData.inflating(stream, expectedSize: size)
    }

    /// A zlib-compressed debug section's stream and inflated size: either
    /// SHF_COMPRESSED with a zlib header, or the older .zdebug_ naming
    /// ("ZLIB", the size as 8 big-endian bytes, a zlib stream). nil otherwise.
    func zlibSection(_ name: String, in sections: [String: Elf64_Shdr]) -> (stream: UnsafeRawBufferPointer, size: UInt64)? {
        if let section = sections[name], section.sh_type != SHT_NOBITS,
           let bytes = slice(at: section.sh_offset, count: section.sh_size) {
            let headerSize = MemoryLayout<Elf64_Chdr>.size
            guard section.sh_flags & UInt64(SHF_COMPRESSED) != 0, bytes.count >= headerSize else { return nil }
            let header = bytes.loadUnaligned(as: Elf64_Chdr.self)
            guard header.ch_type == UInt32(ELFCOMPRESS_ZLIB) else { return nil }
            return (UnsafeRawBufferPointer(rebasing: bytes[headerSize...]), header.ch_size)
        }
        if name.hasPrefix(".debug_"), let section = sections[".z" + name.dropFirst()],
           section.sh_type != SHT_NOBITS, section.sh_size >= 12,
           let bytes = slice(at: section.sh_offset, count: section.sh_size),
           Array(bytes[0..<4]) == Array("ZLIB".utf8) {
            let size = bytes[4..<12].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return (UnsafeRawBufferPointer(rebasing: bytes[12...]), size)
        }
        return nil
    }

    /// Address ranges of the sections that hold code.
    func codeRanges() -> [Range<UInt64>] {
        sectionHeaders.compactMap { section in
            let flags = UInt64(SHF_ALLOC) | UInt64(SHF_EXECINSTR)
            guard section.sh_flags & flags == flags, section.sh_size > 0,
                  section.sh_addr <= UInt64.max - section.sh_size else { return nil }
            return section.sh_addr..<(section.sh_addr + section.sh_size)
        }
    }
}

/// The DWARF sections of one image that the line and inline tables read,
/// kept alive together: borrowed from the mapped file (which this keeps
/// mapped), or inflated into memory this owns. Never written after init:
/// shared across threads as read-only memory.
final class DWARFSectionSet: @unchecked Sendable {
    let info: DWARFInfoSections
    let line: DWARFLineSections
    /// Some section was compressed: its inflated copy is held here.
    let ownsInflatedData: Bool
    /// Bytes of the inflated copies.
    let inflatedBytes: Int
    /// A compressed .debug_line's restart points (lines-only sets), for
    /// inflating one unit's bytes later without the rest (`InflateIndex`).
    let lineIndex: InflateIndex?
    private let owned: [DebugSectionData?]
    private let file: MappedFile?

    /// .debug_str and .debug_line_str as this set has them (line headers'
    /// file names point into them), for a partial set.
    var stringSections: [DebugSectionData?] { Array(owned[1..<Self.lineNames.count]) }

    /// Sections in this order: the line tables' three, then .debug_info's.
    private static let lineNames = [".debug_line", ".debug_str", ".debug_line_str"]
    private static let infoNames = [".debug_info", ".debug_abbrev", ".debug_str_offsets", ".debug_addr",
                                    ".debug_ranges", ".debug_rnglists"]

    /// nil if the image has neither .debug_line nor .debug_info.
    /// - Parameters:
    ///   - file: the mapping `image` points into, kept as long as this is.
    ///   - linesOnly: only what line tables need (.debug_line and its string
    ///     sections): a separate debug file's .debug_info, unused then, is
    ///     most of its size (libc's: 5.8 MB, compressed).
    convenience init?(image: ELFImage, file: MappedFile?, linesOnly: Bool) {
        let sections = image.sectionsByName()
        func section(_ name: String) -> DebugSectionData? { image.debugSection(name, in: sections) }
        let lineIndex: InflateIndex?
        let owned: [DebugSectionData?]
        if linesOnly, let (stream, size) = image.zlibSection(".debug_line", in: sections),
           let (line, index) = InflateIndex.inflating(stream, size: size) {
            lineIndex = index
            owned = [line] + Self.lineNames.dropFirst().map(section)
        } else {
            lineIndex = nil
            owned = (linesOnly ? Self.lineNames : Self.lineNames + Self.infoNames).map(section)
        }
        guard owned[0] != nil || !linesOnly && owned[3] != nil else { return nil }
        self.init(owned: owned, lineIndex: lineIndex, file: file)
    }

    /// Lines only, from a .debug_line of which only some units' bytes were
    /// inflated (`InflateIndex.inflating(_:)`) and the string sections of a
    /// full set.
    convenience init(partialLine line: DebugSectionData, strings: [DebugSectionData?], file: MappedFile?) {
        self.init(owned: [line] + strings, lineIndex: nil, file: file)
    }

    /// `owned`: the sections in the order of `lineNames` then `infoNames`;
    /// missing ones (or all of .debug_info's) read as empty.
    private init(owned: [DebugSectionData?], lineIndex: InflateIndex?, file: MappedFile?) {
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        let all = Self.lineNames.count + Self.infoNames.count
        let bytes = owned.map { $0?.bytes ?? empty } + Array(repeating: empty, count: max(0, all - owned.count))
        line = DWARFLineSections(line: bytes[0], lineStr: bytes[2], str: bytes[1])
        info = DWARFInfoSections(info: bytes[3], abbrev: bytes[4], str: bytes[1], lineStr: bytes[2],
                                 strOffsets: bytes[5], addr: bytes[6], ranges: bytes[7], rnglists: bytes[8])
        ownsInflatedData = owned.contains { $0?.isOwned == true }
        inflatedBytes = owned.reduce(0) { $0 + ($1?.isOwned == true ? $1?.bytes.count ?? 0 : 0) }
        self.lineIndex = lineIndex
        self.owned = owned
        self.file = file
    }
}

/// Where an image's DWARF sections come from, to map (or inflate) them
/// again after compressed ones were let go (`UnitDebugInfo`).
final class DWARFSource: @unchecked Sendable {
    let image: ELFImage
    /// Keeps the mapping behind `image` alive.
    let file: MappedFile?
    let linesOnly: Bool

    init(image: ELFImage, file: MappedFile?, linesOnly: Bool) {
        self.image = image
        self.file = file
        self.linesOnly = linesOnly
    }

    func open() -> DWARFSectionSet? {
        DWARFSectionSet(image: image, file: file, linesOnly: linesOnly)
    }
}

/// What an image's DWARF says about its addresses: source lines
/// (.debug_line) and inlined calls (.debug_info), both indexed once, for
/// the whole image or (`UnitDebugInfo`) for one compile unit.
struct DebugInfo: Sendable {
    var lines: LineTable
    var inlines: InlineTable

    static let empty = DebugInfo(lines: .empty, inlines: .empty)

    init(lines: LineTable, inlines: InlineTable) {
        self.lines = lines
        self.inlines = inlines
    }

    /// Reads the image's DWARF, or nil if it has neither .debug_line nor
    /// .debug_info. Sequences and ranges outside the image's code sections
    /// (functions the linker discarded, whose addresses became 0 or -1) are
    /// dropped.
    /// - Parameter inlinedFrames: also index .debug_info's inlined calls (and
    ///   DWARF 4 compilation directories). Off for system libraries' separate
    ///   debug files, whose .debug_info is large (libc's: 6 MB, seconds to
    ///   index in a debug build) and whose inlining matters little here.
    init?(image: ELFImage, inlinedFrames: Bool = true) {
        guard let sections = DWARFSectionSet(image: image, file: nil, linesOnly: !inlinedFrames) else { return nil }
        self.init(sections: sections, isCode: image.codeRanges().containsAddress, inlinedFrames: inlinedFrames)
    }

    /// The tables of every unit of `sections`.
    init(sections: DWARFSectionSet, isCode: (UInt64) -> Bool, inlinedFrames: Bool) {
        self = withExtendedLifetime(sections) {
            let units = inlinedFrames ? DWARFUnit.units(in: sections.info) : []
            var directories: [Int: [UInt8]] = [:]
            for unit in units {
                if let offset = unit.stmtList, offset < UInt64(Int.max), !unit.compDir.isEmpty {
                    directories[Int(offset)] = unit.compDir
                }
            }
            return DebugInfo(lines: LineTable(sections: sections.line, compilationDirectories: directories,
                                              keepSequence: isCode),
                             inlines: InlineTable(sections: sections.info, units: units, lineSections: sections.line,
                                                  keepRange: isCode))
        }
    }
}

extension [Range<UInt64>] {
    /// Whether one of the ranges holds `address` (for an image's few code sections).
    func containsAddress(_ address: UInt64) -> Bool {
        contains { $0.contains(address) }
    }
}
