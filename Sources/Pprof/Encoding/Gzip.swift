internal import CPprof
import Glibc

enum GzipError: Error {
    case zlib(Int32)
}

enum Gzip {
    /// Compresses with zlib's fastest level, as Go's runtime/pprof does.
    static func compress(_ input: [UInt8], level: Int32 = 1) throws -> [UInt8] {
        var out: UnsafeMutablePointer<UInt8>?
        var outLength = 0
        let rc = input.withUnsafeBufferPointer { cpprof_gzip($0.baseAddress, $0.count, level, &out, &outLength) }
        guard rc == 0, let out else { throw GzipError.zlib(rc) }
        defer { free(out) }
        return Array(UnsafeBufferPointer(start: out, count: outLength))
    }

    static func decompress(_ input: [UInt8]) throws -> [UInt8] {
        var out: UnsafeMutablePointer<UInt8>?
        var outLength = 0
        let rc = input.withUnsafeBufferPointer { cpprof_gunzip($0.baseAddress, $0.count, &out, &outLength) }
        guard rc == 0, let out else { throw GzipError.zlib(rc) }
        defer { free(out) }
        return Array(UnsafeBufferPointer(start: out, count: outLength))
    }
}
