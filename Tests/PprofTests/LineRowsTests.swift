import Testing

@testable import Pprof

/// The compact row storage of line tables answers exactly what the rows say.
@Suite struct LineRowsTests {
    @Test func answersRowsGapsAndOutside() throws {
        let gap = LineRows.gap
        let rows = LineRows(addresses: [0x1000, 0x1010, 0x1020, 0x2000, 0x2008],
                            files: [0, 1, gap, 2, gap], lines: [10, 11, 0, 40, 0], pathCount: 3)
        #expect(rows.count == 5)
        #expect(rows.lookup(0xfff) == nil)
        #expect(try #require(rows.lookup(0x1000)) == (0, 10))
        #expect(try #require(rows.lookup(0x100f)) == (0, 10))
        #expect(try #require(rows.lookup(0x1010)) == (1, 11))
        #expect(rows.lookup(0x1020) == nil)
        #expect(rows.lookup(0x1fff) == nil)
        #expect(try #require(rows.lookup(0x2007)) == (2, 40))
        #expect(rows.lookup(0x2008) == nil)
        #expect(rows.lookup(UInt64.max) == nil)
        #expect(rows.memoryBytes >= 5 * 8)
    }

    @Test func takesEightBytesARow() {
        let count = 10_000
        let rows = LineRows(addresses: (0..<count).map { 0x40_0000 + UInt64($0) * 8 },
                            files: (0..<count).map { UInt32($0 % 100) }, lines: (0..<count).map { UInt32($0) },
                            pathCount: 100)
        #expect(rows.memoryBytes >= count * 8)
        #expect(rows.memoryBytes < count * 9) // 16 in the plain layout
    }

    @Test func keepsWideFileIndexes() throws {
        let rows = LineRows(addresses: [0x10, 0x20, 0x30], files: [70_000, 65_535, LineRows.gap],
                            lines: [1, 2, 0], pathCount: 70_001)
        #expect(try #require(rows.lookup(0x10)) == (70_000, 1))
        #expect(try #require(rows.lookup(0x20)) == (65_535, 2))
        #expect(rows.lookup(0x30) == nil)
    }

    @Test func keepsLinesBeyond16Bits() throws {
        let rows = LineRows(addresses: [0x10, 0x20, 0x30], files: [3, 4, LineRows.gap], lines: [70_000, 65_535, 0],
                            pathCount: 5)
        #expect(try #require(rows.lookup(0x10)) == (3, 70_000))
        #expect(try #require(rows.lookup(0x20)) == (4, 65_535))
        #expect(rows.lookup(0x30) == nil)
    }

    @Test func rowsBeyondFourGiBAreCutAndEndInAGap() throws {
        let base: UInt64 = 0x40_0000
        let rows = LineRows(addresses: [base, base + 0x100, base + (1 << 33)], files: [0, 1, 0],
                            lines: [5, 6, 7], pathCount: 2)
        #expect(try #require(rows.lookup(base + 0x100)) == (1, 6))
        #expect(rows.lookup(base + (1 << 32)) == nil) // past the cut: unknown, not row 1
        #expect(rows.lookup(base + (1 << 33)) == nil)
    }
}
