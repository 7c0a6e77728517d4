internal import CPprof
import Glibc

/// Where inflating a compressed debug section can start again, so that one
/// compile unit's bytes are inflated from the nearest point before them
/// instead of from the section's start.
///
/// libc's separate debug file holds its line section zlib-compressed (1.3 MB
/// inflated). The section is inflated whole when a first unit is read, and
/// let go after a request that reads none of its units; a unit needed after
/// that (a running thread caught in a libc function no stack had shown)
/// inflated the whole section again, 5-11 ms of CPU for one dump. Kept
/// instead: deflate block boundaries about `spacing` bytes of output apart,
/// noted during the first inflate, each with the 32 KiB of output before it
/// (the farthest deflate's back-references reach): four or five points for libc,
/// up to 160 KiB, and a later unit costs the inflate of at most about `spacing` bytes
/// before it. Immutable once built; the compressed bytes stay in the mapped
/// file, which the owner keeps mapped.
struct InflateIndex: @unchecked Sendable {
    /// Output between two points, at least.
    static let spacing = 256 * 1024
    static let windowSize = 32 * 1024
    static let maxPoints = 256

    private struct Point {
        var place: cpprof_zpoint
        var window: [UInt8]
    }

    /// The zlib stream (after the ELF compression header).
    private let compressed: UnsafeRawBufferPointer
    /// Its inflated size.
    let size: Int
    private let points: [Point]

    /// Bytes of the windows kept.
    var memoryBytes: Int { points.reduce(0) { $0 + $1.window.count + MemoryLayout<Point>.stride } }

    /// Inflates `compressed` whole into a new buffer of `size` bytes and notes
    /// its points; nil on any error (not zlib, or another size).
    static func inflating(_ compressed: UnsafeRawBufferPointer, size: UInt64) -> (DebugSectionData, InflateIndex)? {
        guard let input = compressed.baseAddress, size > 0, size < UInt64(UInt32.max),
              let data = DebugSectionData(zeroedCount: Int(size)), let out = data.writable else { return nil }
        var places = [cpprof_zpoint](repeating: cpprof_zpoint(), count: maxPoints)
        var count = 0
        let rc = places.withUnsafeMutableBufferPointer { buffer in
            cpprof_zlib_inflate_indexed(input.assumingMemoryBound(to: UInt8.self), compressed.count, out, Int(size),
                                        spacing, buffer.baseAddress, maxPoints, &count)
        }
        guard rc == 0 else { return nil }
        let points = places.prefix(count).map { place in
            let end = Int(place.out_offset), start = max(0, end - windowSize)
            return Point(place: place, window: Array(UnsafeRawBufferPointer(rebasing: data.bytes[start..<end])))
        }
        return (data, InflateIndex(compressed: compressed, size: Int(size), points: points))
    }

    private init(compressed: UnsafeRawBufferPointer, size: Int, points: [Point]) {
        self.compressed = compressed
        self.size = size
        self.points = points
    }

    /// A buffer of the section's whole size in which `range` (and the bytes
    /// between the nearest point before it and its start) holds the inflated
    /// bytes; the rest reads as zeros and is never touched (pages of an
    /// anonymous mapping that nothing wrote cost no memory). nil on any error.
    func inflating(_ range: Range<Int>) -> DebugSectionData? {
        guard range.lowerBound >= 0, range.upperBound <= size, !range.isEmpty,
              let input = compressed.baseAddress?.assumingMemoryBound(to: UInt8.self),
              let data = DebugSectionData(zeroedCount: size), let out = data.writable else { return nil }
        // The last point at or before the range (points are in output order).
        let point = points.last { Int($0.place.out_offset) <= range.lowerBound }
        let rc: Int32
        if let point {
            var place = point.place
            rc = point.window.withUnsafeBufferPointer { window in
                cpprof_zlib_inflate_range(input, compressed.count, &place, window.baseAddress, window.count,
                                          out, range.upperBound)
            }
        } else {
            rc = cpprof_zlib_inflate_range(input, compressed.count, nil, nil, 0, out, range.upperBound)
        }
        return rc == 0 ? data : nil
    }
}
