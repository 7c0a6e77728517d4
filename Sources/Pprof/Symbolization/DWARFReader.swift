/// Thrown when DWARF data ends early or says something impossible. The
/// parsers catch it per unit, so bad data loses that unit's information and
/// never crashes.
struct MalformedDWARF: Error {}

/// A bounds-checked little-endian cursor over a byte range. Every read
/// checks against `limit` and throws instead of reading past it.
struct DWARFCursor {
    let bytes: UnsafeRawBufferPointer
    var offset: Int
    /// Reads stop here (exclusive); never beyond `bytes.count`.
    let limit: Int

    init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0, limit: Int? = nil) {
        self.bytes = bytes
        let end = min(limit ?? bytes.count, bytes.count)
        self.limit = max(0, end)
        self.offset = min(max(0, offset), self.limit)
    }

    var isAtEnd: Bool { offset >= limit }
    var remaining: Int { limit - offset }

    @inline(__always)
    mutating func u8() throws(MalformedDWARF) -> UInt8 {
        guard offset < limit else { throw MalformedDWARF() }
        let value = bytes.load(fromByteOffset: offset, as: UInt8.self)
        offset += 1
        return value
    }

    @inline(__always)
    mutating func fixed<T: FixedWidthInteger>(_: T.Type) throws(MalformedDWARF) -> T {
        let size = MemoryLayout<T>.size
        guard limit - offset >= size else { throw MalformedDWARF() }
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return T(littleEndian: value)
    }

    /// An unsigned value `size` bytes wide (1, 2, 3, 4 or 8).
    mutating func unsigned(size: Int) throws(MalformedDWARF) -> UInt64 {
        switch size {
        case 1: return UInt64(try u8())
        case 2: return UInt64(try fixed(UInt16.self))
        case 3:
            let low = UInt64(try fixed(UInt16.self))
            return low | UInt64(try u8()) << 16
        case 4: return UInt64(try fixed(UInt32.self))
        case 8: return try fixed(UInt64.self)
        default: throw MalformedDWARF()
        }
    }

    /// An offset into another section: 4 bytes in 32-bit DWARF, 8 in 64-bit.
    mutating func sectionOffset(size: Int) throws(MalformedDWARF) -> UInt64 {
        try unsigned(size: size)
    }

    @inline(__always)
    mutating func uleb() throws(MalformedDWARF) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try u8()
            if shift < 64 { result |= UInt64(byte & 0x7f) << shift }
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    @inline(__always)
    mutating func sleb() throws(MalformedDWARF) -> Int64 {
        var result: Int64 = 0
        var shift: Int64 = 0
        var byte: UInt8
        repeat {
            byte = try u8()
            if shift < 64 { result |= Int64(byte & 0x7f) << shift }
            shift += 7
        } while byte & 0x80 != 0
        if shift < 64 && byte & 0x40 != 0 { result |= Int64(-1) << shift }
        return result
    }

    mutating func skip(_ count: UInt64) throws(MalformedDWARF) {
        guard count <= UInt64(remaining) else { throw MalformedDWARF() }
        offset += Int(count)
    }

    /// Skips a NUL-terminated string and returns where it started.
    mutating func skipCString() throws(MalformedDWARF) -> Int {
        let start = offset
        while try u8() != 0 {}
        return start
    }

    /// The unit length field: (length, offset size 4 or 8). 64-bit DWARF
    /// announces itself with 0xffffffff; 0xfffffff0...0xfffffffe are reserved.
    mutating func initialLength() throws(MalformedDWARF) -> (length: UInt64, offsetSize: Int) {
        let short = try fixed(UInt32.self)
        if short == 0xffff_ffff { return (try fixed(UInt64.self), 8) }
        guard short < 0xffff_fff0 else { throw MalformedDWARF() }
        return (UInt64(short), 4)
    }
}

/// The NUL-terminated bytes at `offset` of a section, or nil if the offset
/// is out of range or the string runs off the end.
func dwarfCString(in bytes: UnsafeRawBufferPointer, at offset: UInt64) -> UnsafeRawBufferPointer? {
    guard offset < UInt64(bytes.count) else { return nil }
    let tail = UnsafeRawBufferPointer(rebasing: bytes[Int(offset)...])
    guard let length = tail.firstIndex(of: 0) else { return nil }
    return UnsafeRawBufferPointer(rebasing: tail[0..<length])
}

/// A copy with capacity for just its elements, for tables kept long.
func compacted<T>(_ array: [T]) -> [T] {
    array.withUnsafeBufferPointer { Array($0) }
}
