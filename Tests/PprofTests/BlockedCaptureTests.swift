import CPprofTestHooks
import CPprof
import Synchronization
import Testing

@testable import Pprof

#if canImport(Glibc)
import Glibc
#endif

// Blocked threads are read from /proc, many in one dump, each into its own
// slot (thread_dump.c, proc_capture.c): each stack must be its own thread's,
// whatever the threads around it block in.

/// Where each parked thread is parked: by tid, an address inside the
/// function it blocks in.
private final class Parked: Sendable {
    let markers = Mutex<[Int32: UInt64]>([:])
    func record(_ marker: UInt64) {
        let tid = cpprof_gettid()
        markers.withLock { $0[tid] = marker }
    }
}

// Two functions that block the same way: a stack must pass through the one
// its thread called, not the other.
@inline(never) private func parkLeft(_ fd: Int32, _ parked: Parked) {
    parked.record(cpprof_caller_address_for_testing())
    var byte: UInt8 = 0
    while read(fd, &byte, 1) < 0 && errno == EINTR {}
}

@inline(never) private func parkRight(_ fd: Int32, _ parked: Parked) {
    parked.record(cpprof_caller_address_for_testing())
    var byte: UInt8 = 0
    var scratch = [UInt64](repeating: 0, count: 700) // a deeper frame: a copy of another length
    scratch[Int(fd) % 700] = 1
    while read(fd, &byte, 1) < 0 && errno == EINTR {}
    if scratch[0] == 42 { print("unlikely") }
}

private func bounds(of address: UInt64) -> Range<UInt64>? {
    var start: UInt64 = 0, end: UInt64 = 0
    guard cpprof_function_bounds_for_testing(address, &start, &end) == 1, start < end else { return nil }
    return start..<end
}

extension ProcessWideStateTests {
    @Suite struct BlockedCaptureTests {
        @Test("150 threads parked in two functions, read from /proc in one dump: each stack is its own thread's")
        func copiesStayWithTheirThreads() throws {
            var fds: [Int32] = [0, 0]
            try #require(pipe(&fds) == 0)
            let parked = Parked()
            var threads: [pthread_t] = []
            let count = 150
            for i in 0..<count {
                let readFD = fds[0]
                let thread = faultSpawn(stackSize: 256 * 1024) {
                    if i % 2 == 0 { parkLeft(readFD, parked) } else { parkRight(readFD, parked) }
                }
                guard let thread else { break }
                threads.append(thread)
            }
            defer {
                close(fds[1]) // every read returns 0
                for t in threads { pthread_join(t, nil) }
                close(fds[0])
            }
            try #require(threads.count == count, "pthread_create refused thread \(threads.count + 1)")
            #expect(waitUntil { parked.markers.withLock { $0.count } == count })
            usleep(50_000)
            let markers = parked.markers.withLock { $0 }
            // The two functions: the bounds of one marker, and of one outside them.
            let leftMarker = try #require(markers.values.first)
            let left = try #require(bounds(of: leftMarker))
            let rightMarker = try #require(markers.values.first { !left.contains($0) })
            let right = try #require(bounds(of: rightMarker))
            #expect(markers.values.filter { left.contains($0) }.count == count / 2)
            #expect(markers.values.filter { right.contains($0) }.count == count / 2)

            let (snapshots, stats) = ThreadDumper.dumpWithStats(deadlineMilliseconds: 2000)
            let mine = snapshots.filter { markers[$0.tid] != nil }
            #expect(mine.count == count)
            #expect(stats.read_blocked >= UInt32(count - 5), "\(stats.read_blocked) read from /proc, \(stats.signalled) signalled")
            var wrong: [String] = []
            for snapshot in mine where snapshot.status == .readWhileBlocked {
                guard let marker = markers[snapshot.tid] else { continue }
                let (own, other) = left.contains(marker) ? (left, right) : (right, left)
                if !snapshot.stack.contains(where: { own.contains($0) }) || snapshot.stack.contains(where: { other.contains($0) }) {
                    wrong.append("\(snapshot.tid): \(snapshot.stack.count) frames")
                }
            }
            #expect(wrong.isEmpty, "\(wrong.count) stacks without their own function, or with the other: \(wrong.prefix(5))")
        }
    }
}
