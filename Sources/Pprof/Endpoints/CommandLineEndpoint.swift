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
