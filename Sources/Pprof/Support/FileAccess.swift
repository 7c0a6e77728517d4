import Glibc

// Small file helpers on raw Glibc calls: the library avoids Foundation.

/// Reads a whole file with read(2). procfs files report size 0 to stat, so
/// this reads until end of file instead of trusting st_size.
func readWholeFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return nil
        }
        if n == 0 { return result }
        result.append(contentsOf: chunk[0..<n])
    }
}

/// readlink(2) as a String, e.g. for /proc/self/exe.
func readSymbolicLink(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = buffer.withUnsafeMutableBufferPointer { readlink(path, $0.baseAddress!, $0.count - 1) }
    guard n > 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The kernel appends this to paths of files unlinked after they were mapped.
let deletedSuffix = " (deleted)"

func strippingDeletedSuffix(_ path: String) -> String {
    path.hasSuffix(deletedSuffix) ? String(path.dropLast(deletedSuffix.count)) : path
}

/// Path of the running executable, as /proc/self/maps spells it.
func mainExecutablePath() -> String {
    readSymbolicLink("/proc/self/exe").map(strippingDeletedSuffix) ?? ""
}

/// A read-only private mapping of a whole file. Symbol tables point into it,
/// so images that stay loaded keep their mapping; the pages are file-backed
/// and cost only page cache.
final class MappedFile {
    let bytes: UnsafeRawBufferPointer

    convenience init?(path: String) {
        var transient = false
        self.init(path: path, transientFailure: &transient)
    }

    /// Maps the file; on failure `transientFailure` tells whether it may
    /// succeed later (out of descriptors, memory or address space), so that
    /// callers do not remember it as unreadable for the process's life.
    init?(path: String, transientFailure: inout Bool) {
        transientFailure = false
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            transientFailure = Self.isTransient(errno)
            return nil
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size > 0 else { return nil }
        let size = Int(info.st_size)
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            transientFailure = Self.isTransient(errno)
            return nil
        }
        bytes = UnsafeRawBufferPointer(start: base, count: size)
    }

    static func isTransient(_ code: Int32) -> Bool {
        code == EMFILE || code == ENFILE || code == ENOMEM || code == EAGAIN || code == EINTR
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count)
    }
}
