import Foundation
import Testing
@testable import Pprof

/// Parses pprof's byte quantities ("63.99MB", "512kB", "96B"). pprof's
/// units are binary (its measurement package: a kB is 1024 bytes, an MB
/// 1024 kB); read as decimal, every estimate came out 2-5 % low.
private func bytes(_ text: String) -> Double? {
    for (suffix, scale) in [("GB", 0x1p30), ("MB", 0x1p20), ("kB", 0x1p10), ("B", 1.0)] where text.hasSuffix(suffix) {
        return Double(text.dropLast(suffix.count)).map { $0 * scale }
    }
    return nil
}

@inline(never) func heapEndpointSiteLarge(count: Int, size: Int) -> [UnsafeMutableRawPointer] {
    (0..<count).map { _ in blackHoleAllocation(malloc(size)!) }
}

@inline(never) func heapEndpointSiteSmall(count: Int, size: Int) -> [UnsafeMutableRawPointer] {
    (0..<count).map { _ in blackHoleAllocation(malloc(size)!) }
}

@inline(never) func heapEndpointChurn(rounds: Int, size: Int) {
    for _ in 0..<rounds { free(blackHoleAllocation(malloc(size)!)) }
}

@inline(never) func blackHoleAllocation(_ p: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer { p }

extension HeapSamplingTests {
    @Suite("Heap endpoints through go tool pprof", .serialized,
           .enabled(if: PprofServer.isHeapProfilingAvailable, "heap profiling is not available in this build"))
    struct HeapEndpointTests {
        /// Sums a sample type per site, from `go tool pprof -traces`.
        func perSite(_ url: String, sampleIndex: String, sites: [String]) throws -> ([String: Double], String) {
            let out = try GoPprof.run(["-traces", "-sample_index=\(sampleIndex)", url])
            var totals = Dictionary(uniqueKeysWithValues: sites.map { ($0, 0.0) })
            for trace in GoPprof.parseTraces(out) {
                guard let value = bytes(trace.value) else { continue }
                for site in sites where trace.functions.contains(where: { $0.contains(site) }) { totals[site]! += value }
            }
            return (totals, out)
        }

        @Test("in-use bytes per call site come out within 10%, and freed memory leaves inuse")
        func inuseAccuracy() throws {
            let saved = PprofServer.memoryProfileRate
            // Thousands of samples per site, a tight estimate in one run: ~14500
            // for the large and ~3800 for the small site (probability
            // 1 - exp(-s/4096) per allocation of s bytes), a standard error of
            // 0.7 and 1.5 %, so the 10 % bounds are more than 5 of them wide.
            PprofServer.memoryProfileRate = 4 * 1024
            defer { PprofServer.memoryProfileRate = saved }
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let large = heapEndpointSiteLarge(count: 64 * 1024, size: 1024)   // 64 MiB
            let small = heapEndpointSiteSmall(count: 32 * 1024, size: 512)   // 16 MiB
            let url = "\(server.baseURL!)/debug/pprof/heap"
            let (before, out) = try perSite(url, sampleIndex: "inuse_space", sites: ["heapEndpointSiteLarge", "heapEndpointSiteSmall"])
            #expect(abs(before["heapEndpointSiteLarge"]! / Double(64 << 20) - 1) < 0.10, "\(before)\n\(out.prefix(1500))")
            #expect(abs(before["heapEndpointSiteSmall"]! / Double(16 << 20) - 1) < 0.10, "\(before)")
            large.forEach { free($0) }
            let (after, _) = try perSite(url, sampleIndex: "inuse_space", sites: ["heapEndpointSiteLarge", "heapEndpointSiteSmall"])
            #expect(after["heapEndpointSiteLarge"]! < Double(64 << 20) * 0.01, "\(after)")
            #expect(abs(after["heapEndpointSiteSmall"]! / Double(16 << 20) - 1) < 0.10, "\(after)")
            small.forEach { free($0) }
        }

        @Test("alloc_space of a churn loop within 10%, allocs defaults to alloc_space")
        func allocsAccuracy() throws {
            let saved = PprofServer.memoryProfileRate
            PprofServer.memoryProfileRate = 16 * 1024
            defer { PprofServer.memoryProfileRate = saved }
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let url = "\(server.baseURL!)/debug/pprof/allocs"
            let (before, _) = try perSite(url, sampleIndex: "alloc_space", sites: ["heapEndpointChurn"])
            heapEndpointChurn(rounds: 128 * 1024, size: 256) // 32 MiB allocated and freed
            let (after, out) = try perSite(url, sampleIndex: "alloc_space", sites: ["heapEndpointChurn"])
            let churned = after["heapEndpointChurn"]! - before["heapEndpointChurn"]!
            #expect(abs(churned / Double(32 << 20) - 1) < 0.10, "\(churned)\n\(out.prefix(1500))")
            let response = try TestHTTP.request(port: server.port!, target: "/debug/pprof/allocs")
            let p = try DecodedProfile(gzipped: response.body)
            #expect(p.string(p.defaultSampleType) == "alloc_space")
            #expect(p.sampleTypes.map { "\(p.string($0.type))/\(p.string($0.unit))" } ==
                    ["alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"])
            #expect(p.string(p.periodType.type) == "space" && p.period == 16 * 1024)
            #expect(p.samples.allSatisfy { s in s.labels.contains { p.string($0.key) == "bytes" && $0.num > 0 } })
            let heap = try DecodedProfile(gzipped: TestHTTP.request(port: server.port!, target: "/debug/pprof/heap").body)
            #expect(heap.defaultSampleType == 0)
        }

        @Test("heap?seconds=N is a delta, and debug=1 is Go's text format")
        func deltaAndText() throws {
            let saved = PprofServer.memoryProfileRate
            PprofServer.memoryProfileRate = 16 * 1024
            defer { PprofServer.memoryProfileRate = saved }
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let port = server.port!
            let worker = Thread {
                usleep(200_000)
                heapEndpointChurn(rounds: 64 * 1024, size: 256) // 16 MiB during the window
            }
            worker.start()
            let delta = try TestHTTP.request(port: port, target: "/debug/pprof/heap?seconds=1")
            #expect(delta.status == 200)
            #expect(delta.header("Content-Disposition") == "attachment; filename=\"heap-delta\"")
            let path = try GoPprof.temporaryFile(delta.body, name: "heap-delta.pb.gz")
            let out = try GoPprof.run(["-traces", "-sample_index=alloc_space", path])
            var churned = 0.0
            for t in GoPprof.parseTraces(out) where t.functions.contains(where: { $0.contains("heapEndpointChurn") }) {
                churned += bytes(t.value) ?? 0
            }
            #expect(abs(churned / Double(16 << 20) - 1) < 0.15, "\(churned)")
            let text = try TestHTTP.request(port: port, target: "/debug/pprof/heap?debug=1")
            #expect(text.header("Content-Type") == "text/plain; charset=utf-8")
            #expect(text.text.hasPrefix("heap profile: "))
            #expect(text.text.contains("@ heap/\(2 * 16 * 1024)\n"))
            // google/pprof parses the legacy text format back.
            let textPath = try GoPprof.temporaryFile(text.body, name: "heap.txt")
            _ = try GoPprof.run(["-top", textPath])
        }
    }
}
