import Foundation
import CPprof
import Testing
@testable import Pprof

/// A thread parked in a known Swift function, in a known blocking call.
@inline(never) func threadEndpointParkedReader(_ fd: Int32) {
    var byte: UInt8 = 0
    _ = read(fd, &byte, 1)
}

/// The thread-dump endpoints through HTTP and `go tool pprof`.
extension ProcessWideStateTests {
    @Suite("Thread endpoints", .serialized)
    struct ThreadEndpointTests {
        /// Starts `count` named threads blocked in `threadEndpointParkedReader`
        /// until the returned closure is called.
        func parkThreads(_ count: Int, name: String) -> @Sendable () -> Void {
            var fds: [Int32] = [0, 0]
            pipe(&fds)
            let readEnd = fds[0], writeEnd = fds[1]
            var threads: [Thread] = []
            for _ in 0..<count {
                let t = Thread {
                    cpprof_set_thread_name(name)
                    threadEndpointParkedReader(readEnd)
                }
                t.start()
                threads.append(t)
            }
            usleep(200_000) // into the read()
            return {
                let bytes = [UInt8](repeating: 1, count: count)
                _ = bytes.withUnsafeBytes { write(writeEnd, $0.baseAddress, count) }
                usleep(100_000)
                close(readEnd); close(writeEnd)
            }
        }

        @Test("goroutine (pprof) merges identical thread stacks, with the Swift caller of read()")
        func goroutineProto() throws {
            let release = parkThreads(5, name: "te-parked")
            defer { release() }
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let out = try GoPprof.run(["-traces", "\(server.baseURL!)/debug/pprof/goroutine"])
            let traces = GoPprof.parseTraces(out)
            let parked = traces.filter { $0.functions.contains { $0.contains("threadEndpointParkedReader") } }
            #expect(parked.map(\.value).compactMap(Int.init).reduce(0, +) >= 5, "\(out.prefix(3000))")
            // The DWARF unwinder crossed glibc: read's caller is there, not just the leaf.
            #expect(parked.contains { $0.functions.first?.contains("threadEndpointParkedReader") == false })
            let response = try TestHTTP.request(port: server.port!, target: "/debug/pprof/goroutine")
            #expect(response.header("Content-Disposition") == "attachment; filename=\"goroutine\"")
            let p = try DecodedProfile(gzipped: response.body)
            #expect(p.sampleTypes.map { "\(p.string($0.type))/\(p.string($0.unit))" } == ["goroutine/count"])
            #expect(p.samples.allSatisfy { $0.labels.isEmpty }, "no per-thread labels by default")
            let total = p.samples.reduce(0) { $0 + $1.values[0] }
            #expect(total >= 6)
        }

        @Test("debug=1 is Go's count format and pprof parses it back")
        func goroutineDebug1() throws {
            let release = parkThreads(3, name: "te-text")
            defer { release() }
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let r = try TestHTTP.request(port: server.port!, target: "/debug/pprof/goroutine?debug=1")
            #expect(r.header("Content-Type") == "text/plain; charset=utf-8")
            #expect(r.text.hasPrefix("goroutine profile: total "))
            #expect(r.text.contains("threadEndpointParkedReader"))
            // google/pprof's legacy parser reads it back (names come from its own symbolization).
            let path = try GoPprof.temporaryFile(r.body, name: "goroutine.txt")
            let top = try GoPprof.run(["-top", "-symbolize=none", path])
            #expect(top.contains("Type: goroutine"))
        }

        @Test("debug=2 lists every thread with name, id, state and stack")
        func goroutineDebug2() throws {
            let release = parkThreads(2, name: "te-dump")
            defer { release() }
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let r = try TestHTTP.request(port: server.port!, target: "/debug/pprof/goroutine?debug=2")
            let blocks = r.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
            let taskCount = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0
            #expect(blocks.count >= taskCount - 5 && blocks.count <= taskCount + 5, "\(blocks.count) blocks, \(taskCount) threads")
            let parked = blocks.filter { $0.contains("\"te-dump\"") }
            #expect(parked.count == 2)
            for block in parked {
                let header = block.split(separator: "\n").first.map(String.init) ?? ""
                #expect(header.hasPrefix("goroutine ") && header.contains("[sleeping"), "\(header)")
                #expect(block.contains("threadEndpointParkedReader"))
                #expect(block.contains("ThreadEndpointTests.swift:"), "file and line in the dump:\n\(block)")
            }
        }

        @Test("goroutine?seconds=N is a delta of thread counts")
        func goroutineDelta() throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let port = server.port!
            let releaseBox = Locked<(@Sendable () -> Void)?>(nil)
            let starter = Thread {
                usleep(400_000) // after the first snapshot
                releaseBox.value = self.parkThreads(4, name: "te-delta")
            }
            starter.start()
            defer { releaseBox.value?() }
            let r = try TestHTTP.request(port: port, target: "/debug/pprof/goroutine?seconds=1")
            #expect(r.header("Content-Disposition") == "attachment; filename=\"goroutine-delta\"")
            let path = try GoPprof.temporaryFile(r.body, name: "goroutine-delta.pb.gz")
            let traces = GoPprof.parseTraces(try GoPprof.run(["-traces", path]))
            let added = traces.filter { $0.functions.contains { $0.contains("threadEndpointParkedReader") } }
                .compactMap { Int($0.value) }.reduce(0, +)
            #expect(added == 4)
        }

        @Test("threadcreate shows where live threads were created")
        func threadCreate() throws {
            let release = parkThreads(3, name: "te-created")
            defer { release() }
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let out = try GoPprof.run(["-traces", "\(server.baseURL!)/debug/pprof/threadcreate"])
            // Foundation's Thread.start made them, called from parkThreads.
            let fromHere = GoPprof.parseTraces(out).filter { $0.functions.contains { $0.contains("parkThreads") } }
            #expect(fromHere.compactMap { Int($0.value) }.reduce(0, +) >= 3, "\(out.prefix(3000))")
            let text = try TestHTTP.request(port: server.port!, target: "/debug/pprof/threadcreate?debug=1")
            #expect(text.text.hasPrefix("threadcreate profile: total "))
        }

        @Test("the index counts threads")
        func indexCounts() throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let html = try TestHTTP.request(port: server.port!, target: "/debug/pprof/").text
            #expect(html.contains("<a href='goroutine?debug=1'>goroutine</a>"))
            #expect(html.contains("<a href='threadcreate?debug=1'>threadcreate</a>"))
            #expect(html.contains("<a href='heap?debug=1'>heap</a>") && html.contains("<a href='allocs?debug=1'>allocs</a>"))
        }
    }
}

