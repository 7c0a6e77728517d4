import Glibc
import Testing

@testable import Pprof

/// At the descriptor limit (EMFILE), reading a binary's symbols fails; that
/// failure must not be remembered once descriptors are free again (issue 11,
/// item 4). In a child process: exhausting descriptors here would break the
/// tests running beside it.
@Suite("Faults: descriptor exhaustion")
struct FaultDescriptorTests {
    @Test("symbols that could not be read at EMFILE are read once descriptors are free")
    func symbolsAreRetriedAfterEMFILE() throws {
        try ChildProcessTest.expectScenario("emfileSymbolsScenario", scenario: "emfile-symbols", timeoutSeconds: 120)
    }

    /// Run by `symbolsAreRetriedAfterEMFILE` in a child process.
    @Test(.enabled(if: ChildProcessTest.scenario == "emfile-symbols"))
    func emfileSymbolsScenario() throws {
        let probe = symbolizationProbe(Int(getpid()))
        let symbolizer = Symbolizer()
        let spare = exhaustDescriptors()
        let starved = symbolizer.frames(at: probe).last?.function ?? ""
        spare.forEach { close($0) }
        #expect(!starved.contains("symbolizationProbe"), "the scenario did not starve the symbolizer: \(starved)")
        let named = symbolizer.frames(at: probe).last?.function ?? ""
        #expect(named.contains("PprofTests.symbolizationProbe("), "after EMFILE: \(named.debugDescription)")
        print("emfileSymbolsScenario: done")
    }

    @Test("at EMFILE, thread profiles and a CPU profile answer a 5xx naming the cause, never an empty 200")
    func threadProfilesSayEMFILE() throws {
        try ChildProcessTest.expectScenario("emfileThreadsScenario", scenario: "emfile-threads", timeoutSeconds: 120)
    }

    /// Run by `threadProfilesSayEMFILE` in a child process.
    @Test(.enabled(if: ChildProcessTest.scenario == "emfile-threads"))
    func emfileThreadsScenario() throws {
        let handler = PprofHandler(configuration: .init())
        let emfile = SocketIO.errorText(EMFILE)
        let spare = exhaustDescriptors()
        var answers: [(String, PprofHandler.Response)] = []
        for (path, query) in [("/debug/pprof/goroutine", ""), ("/debug/pprof/goroutine", "debug=1"),
                              ("/debug/pprof/goroutine", "debug=2"), ("/debug/pprof/threadcreate", ""),
                              ("/debug/pprof/threadcreate", "debug=1"), ("/debug/pprof/profile", "seconds=1")] {
            answers.append(("\(path)?\(query)", handler.respondBlocking(to: .init(method: "GET", path: path, query: query))))
        }
        spare.forEach { close($0) }
        for (target, response) in answers {
            let text = String(decoding: response.body, as: UTF8.self)
            #expect(response.status >= 500, "\(target): \(response.status) \(text.prefix(200))")
            #expect(!text.contains("kernel refused"), "\(target): \(text)")
            if !target.contains("profile?") {
                #expect(text.contains(emfile), "\(target): \(text)")
            }
        }
        // Descriptors free again: the same requests work.
        #expect(handler.respondBlocking(to: .init(method: "GET", path: "/debug/pprof/goroutine", query: "debug=1")).status == 200)
        print("emfileThreadsScenario: done")
    }

    /// Takes every free descriptor under a lowered soft limit; returns them.
    private func exhaustDescriptors() -> [Int32] {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = min(limit.rlim_cur, 256)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        var taken: [Int32] = []
        while true {
            let fd = dup(2)
            if fd < 0 { break }
            taken.append(fd)
        }
        return taken
    }
}
