import Foundation

/// Runs the real pprof client (`go tool pprof` from Debian's golang-go) so
/// that profile content is checked by the tool users run, not only by us.
enum GoPprof {
    struct Failure: Error, CustomStringConvertible { var description: String }

    static var goBinary: String? {
        for candidate in ["/usr/bin/go", "/usr/lib/go/bin/go", "/usr/local/go/bin/go"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return nil
    }

    /// `go tool pprof <args>`; returns stdout, throws with stderr on failure.
    static func run(_ args: [String], timeoutSeconds: Double = 120) throws -> String {
        guard let go = goBinary else { throw Failure(description: "go is not installed (Debian package golang-go)") }
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("pprof-home-\(getpid())")
        try? FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: go)
        process.arguments = ["tool", "pprof"] + args
        var env = ProcessInfo.processInfo.environment
        env["HOME"] = home.path
        env["PPROF_TMPDIR"] = home.path
        env["GOCACHE"] = home.appendingPathComponent("gocache").path
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes while it runs so a large output cannot block it.
        let outData = Locked(Data()), errData = Locked(Data())
        let group = DispatchGroup()
        for (pipe, sink) in [(out, outData), (err, errData)] {
            group.enter()
            DispatchQueue.global().async {
                sink.value = pipe.fileHandleForReading.readDataToEndOfFile()
                group.leave()
            }
        }
        if group.wait(timeout: .now() + timeoutSeconds) == .timedOut {
            process.terminate()
            throw Failure(description: "go tool pprof timed out")
        }
        process.waitUntilExit()
        let stdout = String(decoding: outData.value, as: UTF8.self)
        let stderr = String(decoding: errData.value, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw Failure(description: "go tool pprof \(args.joined(separator: " ")) failed (\(process.terminationStatus)): \(stderr)")
        }
        return stdout
    }

    /// Writes bytes to a temporary file and returns its path.
    static func temporaryFile(_ bytes: [UInt8], name: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try Data(bytes).write(to: url)
        return url.path
    }

    /// One sample of `-traces` output: its first value and its stack, leaf first.
    struct Trace {
        var value: String
        var functions: [String]
    }

    /// Parses `go tool pprof -traces`: blocks separated by dashed lines, the
    /// first line holding the value and the leaf function.
    static func parseTraces(_ output: String) -> [Trace] {
        var traces: [Trace] = []
        var current: Trace?
        for line in output.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("-----------+") {
                if let c = current { traces.append(c) }
                current = nil
                continue
            }
            let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            if current == nil {
                guard line.hasPrefix(" "), parts.count == 2, parts[0].first?.isNumber == true else { continue }
                current = Trace(value: String(parts[0]), functions: [String(parts[1]).trimmingCharacters(in: .whitespaces)])
            } else {
                let name = line.trimmingCharacters(in: .whitespaces)
                if !name.isEmpty { current!.functions.append(name) }
            }
        }
        if let c = current { traces.append(c) }
        return traces
    }
}
