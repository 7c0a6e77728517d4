import Glibc
import Testing
@testable import Pprof

/// Files, lines and inlined calls read per compile unit on first need
/// (`UnitDebugInfo`, what the symbolizer keeps) must be what reading the
/// whole image gives (`DebugInfo`): a profile's file:line and inline frames
/// may not depend on which units earlier requests happened to read.
@Suite struct UnitDebugInfoTests {
    /// This test binary's DWARF (a debug build: one unit per source file,
    /// hundreds of units), read both ways from one mapping.
    private func tables() throws -> (whole: DebugInfo, perUnit: UnitDebugInfo) {
        let file = try #require(MappedFile(path: "/proc/self/exe"))
        let image = try #require(ELFImage(bytes: file.bytes))
        let code = image.codeRanges()
        let source = DWARFSource(image: image, file: file, linesOnly: false)
        let sections = try #require(source.open())
        let whole = DebugInfo(sections: sections, isCode: code.containsAddress, inlinedFrames: true)
        return (whole, UnitDebugInfo(source: source, sections: sections, code: code))
    }

    @Test func perUnitTablesAnswerAsTheWholeImage() throws {
        var (whole, perUnit) = try tables()
        let rows = whole.lines.addresses
        try #require(rows.count > 10_000 && whole.inlines.boundaryCount > 100)
        // Row starts and the byte before each (the previous row's last), and
        // inlined-call boundaries, in an order that enters units anywhere.
        let step = max(1, rows.count / 10_000)
        var addresses = stride(from: 0, to: rows.count, by: step).flatMap { [rows[$0], rows[$0] &- 1] }
        addresses += whole.inlines.addresses.prefix(5_000)
        addresses.sort { ($0 &* 0x9E37_79B9_7F4A_7C15) < ($1 &* 0x9E37_79B9_7F4A_7C15) }
        var mismatches: [String] = []
        for address in addresses {
            let found = perUnit.lookup(address)
            let location = whole.lines.lookup(address), inlines = whole.inlines.lookup(address)
            if found.location.map({ lexical($0.file) }) != location.map({ lexical($0.file) })
                || found.location?.line != location?.line || found.inlines != inlines {
                mismatches.append("0x\(String(address, radix: 16)): \(found) instead of \(String(describing: location)) \(inlines)")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) of \(addresses.count): \(mismatches.prefix(3))")
        #expect(perUnit.unitsRead > 100)
    }

    /// `path` with "." and "dir/.." removed. Where two line programs cover
    /// one address (the TSan runtime linked into the sanitizer build has
    /// such), the whole-image table and the unit's may name one header
    /// through different directory entries: `lib/sanitizer_common/x.h` and
    /// `lib/tsan/rtl/../../sanitizer_common/x.h` are one file.
    private func lexical(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == "..", let last = parts.last, last != ".." { parts.removeLast(); continue }
            parts.append(part)
        }
        return (path.hasPrefix("/") ? "/" : "") + parts.joined(separator: "/")
    }

    @Test func aLookupReadsOnlyTheUnitsAroundItsAddress() throws {
        var (whole, perUnit) = try tables()
        let probe = symbolizationProbe(2)
        let bias = try #require(DynamicLoader.objects().objects.first { $0.isMainProgram }).bias
        let found = perUnit.lookup(probe - bias)
        #expect(found.location?.file == whole.lines.lookup(probe - bias)?.file)
        #expect(found.location?.file.hasSuffix("SymbolizerTests.swift") == true, "\(found)")
        // Its unit, and what the unit DIEs place nowhere; not the hundreds of others.
        #expect(perUnit.unitCount > 100)
        #expect(perUnit.unitsRead <= 3, "\(perUnit.unitsRead) of \(perUnit.unitCount) units read")
        #expect(perUnit.memoryBytes.lines < whole.lines.memoryBytes / 4,
                "rows read \(perUnit.readRows) of \(whole.lines.rowCount), index \(perUnit.indexBytes) bytes")
    }

    /// libc's separate debug file (libc6-dbg), if installed: compressed,
    /// and read for lines only.
    private static func libcDebugFile() -> SeparateDebugFile? {
        guard let getpid = dlsym(dlopen(nil, RTLD_LAZY), "getpid"),
              let libc = DynamicLoader.objects().objects.first(where: { $0.contains(UInt64(UInt(bitPattern: getpid))) }),
              let file = MappedFile(path: libc.openPath), let image = ELFImage(bytes: file.bytes) else { return nil }
        var transient = false
        return SeparateDebugFile(for: image, path: libc.name, buildID: libc.buildID, transientFailure: &transient)
    }

    @Test(.enabled(if: libcDebugFile() != nil, "libc's debug file (libc6-dbg) is not installed"))
    func perProgramLinesOfACompressedDebugFileAnswerAsTheWholeFile() throws {
        let debug = try #require(Self.libcDebugFile())
        let whole = try #require(DebugInfo(image: debug.image, inlinedFrames: false))
        let source = DWARFSource(image: debug.image, file: debug.file, linesOnly: true)
        let sections = try #require(source.open())
        try #require(sections.ownsInflatedData, "libc's debug sections are not compressed here")
        var perUnit = UnitDebugInfo(source: source, sections: sections, code: debug.image.codeRanges())
        let rows = whole.lines.addresses
        try #require(rows.count > 10_000)
        let step = max(1, rows.count / 3_000)
        var addresses = stride(from: 0, to: rows.count, by: step).flatMap { [rows[$0], rows[$0] &- 1] }
        addresses.sort { ($0 &* 0x9E37_79B9_7F4A_7C15) < ($1 &* 0x9E37_79B9_7F4A_7C15) }
        var mismatches: [String] = []
        for (number, address) in addresses.enumerated() {
            // As between requests: the inflated sections go, and come back when a program is read.
            if number % 1_000 == 999 {
                perUnit.releaseInflatedSections()
                #expect(!perUnit.holdsInflatedSections)
            }
            let found = perUnit.lookup(address).location, expected = whole.lines.lookup(address)
            if found?.file != expected?.file || found?.line != expected?.line {
                mismatches.append("0x\(String(address, radix: 16)): \(String(describing: found)) instead of \(String(describing: expected))")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) of \(addresses.count): \(mismatches.prefix(3))")
        // Units read after the sections went were inflated from a restart
        // point, on their own: nothing whole was inflated again.
        #expect(!perUnit.holdsInflatedSections, "a unit read after a release inflated the whole section again")
    }

    /// Any range of libc's compressed line section, inflated from the
    /// nearest restart point, has the bytes the whole inflate gave.
    @Test(.enabled(if: libcDebugFile() != nil, "libc's debug file (libc6-dbg) is not installed"))
    func aRangeInflatedFromARestartPointMatchesTheWholeSection() throws {
        let debug = try #require(Self.libcDebugFile())
        let (stream, size) = try #require(debug.image.zlibSection(".debug_line", in: debug.image.sectionsByName()),
                                          "libc's line section is not zlib-compressed here")
        let (whole, index) = try #require(InflateIndex.inflating(stream, size: size))
        #expect(whole.bytes.count == Int(size))
        try #require(index.size > 4 * InflateIndex.spacing, "the section is too small to need restart points")
        #expect(index.memoryBytes >= InflateIndex.windowSize, "no restart point was kept")
        #expect(index.memoryBytes < index.size / 2)
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        var ranges: [Range<Int>] = [0..<100, (index.size - 100)..<index.size]
        for _ in 0..<40 {
            state = state &* 6_364_136_223_846_793_005 &+ 1
            let start = Int(state >> 33) % index.size
            ranges.append(start..<min(index.size, start + 1 + Int(state >> 50) % 20_000))
        }
        for range in ranges {
            let part = try #require(index.inflating(range), "no bytes for \(range)")
            #expect(part.bytes.count == index.size)
            #expect(part.bytes[range].elementsEqual(whole.bytes[range]), "bytes of \(range) differ")
        }
        #expect(index.inflating(0..<(index.size + 1)) == nil)
    }
}
