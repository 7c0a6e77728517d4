import Glibc
import Testing

/// The signal handlers' call graphs, read from the machine code by
/// Scripts/check-signal-handlers.sh: nothing outside our own handler code
/// but errno, raw system calls, clock_gettime and memcpy/memset.
@Suite("Signal handlers: no allocation, no lock")
struct SignalHandlerAuditTests {
    /// The package root, from this file's path (Tests/PprofTests/<file>).
    static var packageRoot: String {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }

    /// The clang of the toolchain this test runs with (next to the
    /// libswiftCore.so it loaded), in case `swift` is not on PATH.
    static var toolchainClang: String? {
        let maps = String(decoding: faultReadFile("/proc/self/maps") ?? [], as: UTF8.self)
        guard let line = maps.split(separator: "\n").first(where: { $0.hasSuffix("/lib/swift/linux/libswiftCore.so") }),
              let slash = line.firstIndex(of: "/") else { return nil }
        let library = line[slash...]
        guard let range = library.range(of: "/lib/swift/linux/libswiftCore.so") else { return nil }
        let clang = library[..<range.lowerBound] + "/bin/clang"
        return access(String(clang), X_OK) == 0 ? String(clang) : nil
    }

    static var toolsAvailable: Bool {
        access(packageRoot + "/Scripts/check-signal-handlers.sh", R_OK) == 0 && access("/bin/bash", X_OK) == 0
    }

    @Test("the one SIGPROF handler reaches only async-signal-safe calls (objdump, -O0 and -O2)",
          .enabled(if: toolsAvailable, "the package sources are not where this test was compiled"))
    func handlersCallOnlyAllowedFunctions() throws {
        let outcome = try runProcess(["/bin/bash", Self.packageRoot + "/Scripts/check-signal-handlers.sh", "-v"],
                                     environment: Self.toolchainClang.map { ["CC=\($0)"] } ?? [], timeoutSeconds: 120)
        #expect(outcome.exitStatus == 0, "\(outcome.output)")
        // The dispatcher reaches both recognisers, and through them the
        // sampler's recording path and the dump's stack copy.
        let graph = outcome.output.split(separator: "\n").filter { $0.hasPrefix("-O0 sigprof_handler: ours:") }
        #expect(graph.count == 1, "\(outcome.output)")
        for function in ["cpprof_cpu_on_sigprof", "record_sample", "cpprof_dump_on_sigprof", "capture_context", "chain_previous"] {
            #expect(graph.first?.contains(" \(function)") == true, "\(function) not reached: \(outcome.output)")
        }
    }
}
