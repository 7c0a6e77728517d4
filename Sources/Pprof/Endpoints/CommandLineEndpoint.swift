import Glibc

/// `/debug/pprof/cmdline`: the arguments joined by NUL, as Go's `os.Args`.
enum CommandLineEndpoint {
    static func arguments() -> String {
        // /proc/self/cmdline has the exact arguments, NUL-terminated.
        var bytes = readWholeFile("/proc/self/cmdline") ?? []
        if bytes.last == 0 { bytes.removeLast() }
        if bytes.isEmpty { return CommandLine.arguments.joined(separator: "\0") }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Reads a (small, /proc) file without Foundation; nil if it cannot be opened.
func readWholeFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out.append(contentsOf: chunk[0..<n])
    }
    return out
}
