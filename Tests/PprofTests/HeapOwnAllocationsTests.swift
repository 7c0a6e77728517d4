// The profiler's own allocations stay out of /heap and /allocs: on its own
// threads (the built-in server) and on an app's thread (PprofHandler). Runs
// in a child process, so that no other test calling library code directly
// on its threads can put library frames in the profiles.
import CPprof
import Foundation
import Testing

@testable import Pprof

@Suite("Heap: the profiler's own allocations",
       .enabled(if: PprofServer.isHeapProfilingAvailable, "heap profiling is not available in this build"))
struct HeapOwnAllocationsTests {
    @Test("after scrapes of every endpoint no heap or allocs sample has a frame of this library; the app's sites keep their sizes")
    func ownAllocationsAreLeftOut() throws {
        try ChildProcessTest.expectScenario("ownAllocationsScenario", scenario: "own-allocations", timeoutSeconds: 300)
    }

    /// Every endpoint, with the query variants that take different paths.
    static let targets = [
        "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1",
        "/debug/pprof/heap", "/debug/pprof/heap?debug=1", "/debug/pprof/allocs", "/debug/pprof/allocs?debug=1",
        "/debug/pprof/goroutine", "/debug/pprof/goroutine?debug=1", "/debug/pprof/goroutine?debug=2",
        "/debug/pprof/threadcreate", "/debug/pprof/threadcreate?debug=1",
        "/debug/pprof/block", "/debug/pprof/mutex", "/debug/pprof/symbol",
    ]

    /// Whether a frame belongs to this library: by readable name, by
    /// symbol (mangled Swift module name or the C prefix), by source file.
    static func isLibraryFrame(name: String, systemName: String, file: String) -> Bool {
        let readable = name.hasPrefix("Pprof.") || name.contains(" Pprof.") || name.contains("(Pprof.")
            || name.contains("<Pprof.") || name.hasPrefix("cpprof_")
        let symbol = systemName.hasPrefix("$s5Pprof") || systemName.contains("5PprofE") || systemName.hasPrefix("cpprof_")
        let source = file.contains("/Sources/Pprof/") || file.contains("/Sources/CPprof/")
        return readable || symbol || source
    }

    /// Run by `ownAllocationsAreLeftOut` in a child process.
    @Test(.enabled(if: ChildProcessTest.scenario == "own-allocations"))
    func ownAllocationsScenario() async throws {
        // A low rate: the library's megabytes of symbol tables and buffers
        // would give it hundreds of samples if they were not left out.
        PprofServer.memoryProfileRate = 4096
        let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
        defer { server.stop() }
        let port = try #require(server.port)
        let large = heapEndpointSiteLarge(count: 16 * 1024, size: 1024)   // 16 MiB
        // Each site gets thousands of samples at this rate (an allocation of s
        // bytes is sampled with probability 1 - exp(-s/4096)): ~3600 for the
        // large and ~3800 for the small site, a standard error of about 1.5 %,
        // so the 10 % bounds below are more than 5 standard errors wide.
        let small = heapEndpointSiteSmall(count: 32 * 1024, size: 512)    // 16 MiB
        defer { (large + small).forEach { free($0) } }

        // The built-in server (its own threads).
        for target in Self.targets {
            #expect(try TestHTTP.request(port: port, target: target).status == 200, "\(target)")
        }
        let pc = "0x" + String(cpprof_heap_caller_pc(), radix: 16)
        #expect(try TestHTTP.request(port: port, method: "POST", target: "/debug/pprof/symbol", body: Array(pc.utf8)).status == 200)

        // A handler mounted on an app's router: on this thread, and on a thread of its own.
        let handler = PprofHandler()
        for target in Self.targets {
            let parts = target.split(separator: "?", maxSplits: 1).map(String.init)
            let request = PprofHandler.Request(method: "GET", path: parts[0], query: parts.count > 1 ? parts[1] : "")
            #expect(handler.respondBlocking(to: request).status == 200, "\(target)")
        }
        let onItsThread = await handler.respond(to: .init(method: "GET", path: "/debug/pprof/goroutine", query: "debug=2"))
        #expect(onItsThread.status == 200)
        heapEndpointChurn(rounds: 128 * 1024, size: 256) // 32 MiB allocated and freed

        for name in ["heap", "allocs"] {
            let response = try TestHTTP.request(port: port, target: "/debug/pprof/\(name)")
            // Our decoder: names, symbols and source files of every frame.
            // (It gunzips with the library's code: that is the library's work.)
            let p = try HeapSampler.ownWork { () throws in try DecodedProfile(gzipped: response.body) }
            var libraryFrames: Set<String> = []
            for sample in p.samples where sample.values.contains(where: { $0 != 0 }) {
                for id in sample.locationIDs {
                    guard let location = p.locations.first(where: { $0.id == id }) else { continue }
                    for line in location.lines {
                        guard let f = p.functions.first(where: { $0.id == line.functionID }) else { continue }
                        if Self.isLibraryFrame(name: p.string(f.name), systemName: p.string(f.systemName), file: p.string(f.filename)) {
                            libraryFrames.insert(p.string(f.name))
                        }
                    }
                }
            }
            #expect(libraryFrames.isEmpty, "\(name): \(libraryFrames.sorted().prefix(20))")
            #expect(p.samples.count > 0)

            // go tool pprof: every stack it prints, by name.
            let path = try GoPprof.temporaryFile(response.body, name: "\(name).pb.gz")
            for index in ["alloc_space", "inuse_space"] {
                let out = try GoPprof.run(["-traces", "-sample_index=\(index)", path])
                let traces = GoPprof.parseTraces(out)
                #expect(!traces.isEmpty)
                let named = traces.flatMap(\.functions).filter { Self.isLibraryFrame(name: $0, systemName: "", file: "") }
                #expect(named.isEmpty, "\(name) \(index): \(Set(named).sorted().prefix(20))")
            }
        }

        // The app's own sites keep their sizes.
        let sites = HeapSamplingTests.HeapEndpointTests()
        let (inuse, out) = try sites.perSite("\(server.baseURL!)/debug/pprof/heap", sampleIndex: "inuse_space",
                                             sites: ["heapEndpointSiteLarge", "heapEndpointSiteSmall"])
        #expect(abs(inuse["heapEndpointSiteLarge"]! / Double(16 << 20) - 1) < 0.10, "\(inuse)\n\(out.prefix(1500))")
        #expect(abs(inuse["heapEndpointSiteSmall"]! / Double(16 << 20) - 1) < 0.10, "\(inuse)")
        let (allocs, _) = try sites.perSite("\(server.baseURL!)/debug/pprof/allocs", sampleIndex: "alloc_space",
                                            sites: ["heapEndpointChurn"])
        #expect(abs(allocs["heapEndpointChurn"]! / Double(32 << 20) - 1) < 0.10, "\(allocs)")
        print("ownAllocationsScenario: done")
    }
}
