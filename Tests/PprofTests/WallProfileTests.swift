import CPprof
import Foundation
import Glibc
import Synchronization
import Testing

@testable import Pprof

// /debug/fgprof: wall-clock profiles that leave blocked threads alone.
// The 10 s scenario runs in a child process: it puts a pipe on the child's
// standard input (for readLine) and leaves threads blocked when it exits.

/// Early returns (EINTR, short sleeps, spurious wake-ups) per blocked thread.
private let wallEarlyReturns = Mutex<[String: Int]>([:])
private func wallCountEarly(_ role: String) { wallEarlyReturns.withLock { $0[role, default: 0] += 1 } }

private let wallStop = Atomic<Bool>(false)
/// Measured truth of the split thread: ns spent in each phase.
private let wallSleptNanoseconds = Atomic<Int64>(0)
private let wallComputedNanoseconds = Atomic<Int64>(0)

private func wallNow() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

@inline(never) func wallBlockNanosleep() {
    while !wallStop.load(ordering: .relaxed) {
        var request = timespec(tv_sec: 3600, tv_nsec: 0), left = timespec()
        if nanosleep(&request, &left) != 0 { wallCountEarly("nanosleep") }
    }
}

@inline(never) func wallBlockPipeRead(_ fd: Int32) {
    var byte: UInt8 = 0
    while read(fd, &byte, 1) < 0 { wallCountEarly("read") }
}

@inline(never) func wallBlockPoll(_ fd: Int32) {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
        let r = poll(&p, 1, 3_600_000)
        if r > 0 { return }
        wallCountEarly("poll")
    }
}

// Glibc's Swift module has no <sys/epoll.h>: the three calls through dlsym,
// and x86_64's packed 12-byte epoll_event as raw bytes.
private typealias EpollCreate1 = @convention(c) (Int32) -> Int32
private typealias EpollCtl = @convention(c) (Int32, Int32, Int32, UnsafeMutableRawPointer?) -> Int32
private typealias EpollWait = @convention(c) (Int32, UnsafeMutableRawPointer?, Int32, Int32) -> Int32

@inline(never) func wallBlockEpoll(_ fd: Int32) {
    guard let c = dlsym(nil, "epoll_create1"), let a = dlsym(nil, "epoll_ctl"), let w = dlsym(nil, "epoll_wait") else {
        wallCountEarly("epoll_wait (unavailable)")
        return
    }
    let create = unsafeBitCast(c, to: EpollCreate1.self)
    let ctl = unsafeBitCast(a, to: EpollCtl.self)
    let wait = unsafeBitCast(w, to: EpollWait.self)
    let ep = create(0)
    var event = [UInt8](repeating: 0, count: 12)
    event[0] = 1 // EPOLLIN
    _ = event.withUnsafeMutableBytes { ctl(ep, 1 /* EPOLL_CTL_ADD */, fd, $0.baseAddress) }
    var out = [UInt8](repeating: 0, count: 12)
    while true {
        let r = out.withUnsafeMutableBytes { wait(ep, $0.baseAddress, 1, 3_600_000) }
        if r > 0 { break }
        wallCountEarly("epoll_wait")
    }
    close(ep)
}

/// A mutex and condition variable that live as long as the process.
final class WallCondition: @unchecked Sendable {
    let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    init() { pthread_mutex_init(mutex, nil); pthread_cond_init(cond, nil) }
    func broadcast() { pthread_mutex_lock(mutex); pthread_cond_broadcast(cond); pthread_mutex_unlock(mutex) }
}

@inline(never) func wallBlockCondWait(_ c: WallCondition) {
    pthread_mutex_lock(c.mutex)
    while !wallStop.load(ordering: .relaxed) {
        pthread_cond_wait(c.cond, c.mutex)
        if !wallStop.load(ordering: .relaxed) { wallCountEarly("pthread_cond_wait") }
    }
    pthread_mutex_unlock(c.mutex)
}

@inline(never) func wallBlockReadLine() {
    if readLine() == nil || !wallStop.load(ordering: .relaxed) { wallCountEarly("readLine") }
}

@inline(never) func wallSleepPart(_ nanoseconds: Int) {
    let t0 = wallNow()
    var request = timespec(tv_sec: 0, tv_nsec: nanoseconds), left = timespec()
    _ = nanosleep(&request, &left)
    wallSleptNanoseconds.add(wallNow() - t0, ordering: .relaxed)
}

@inline(never) func wallComputePart(_ nanoseconds: Int64) -> UInt64 {
    let t0 = wallNow()
    var x: UInt64 = 0x9E37_79B9_7F4A_7C15
    repeat {
        for _ in 0..<2_000 { x = x &* 6_364_136_223_846_793_005 &+ 1 }
    } while wallNow() - t0 < nanoseconds
    wallComputedNanoseconds.add(wallNow() - t0, ordering: .relaxed)
    return x
}

/// Two sleeps with the same frame size, called from the same frame: while
/// blocked, the thread has the same stack pointer and program counter in
/// both, and only the return address into `wallAlternate` tells them apart.
/// A reused unwind (the memo of blocked threads' unwinds) must still see it.
@inline(never) func wallSleepA() {
    var request = timespec(tv_sec: 0, tv_nsec: 7_000_000), left = timespec()
    _ = nanosleep(&request, &left)
}

@inline(never) func wallSleepB() {
    var request = timespec(tv_sec: 0, tv_nsec: 7_000_001), left = timespec()
    _ = nanosleep(&request, &left)
}

/// Three sleeps in A, then three in B: consecutive captures in the same one
/// (reusable), and a switch every 21 ms (not reusable).
@inline(never) func wallAlternate() {
    while !wallStop.load(ordering: .relaxed) {
        for _ in 0..<3 { wallSleepA() }
        for _ in 0..<3 { wallSleepB() }
    }
}

/// 70% asleep, 30% computing, in cycles of random length (5 to 15 ms) so
/// that no cycle keeps step with the 99 Hz ticks.
@inline(never) func wallSplit() {
    var sink: UInt64 = 0
    var random: UInt64 = 0x2545_F491_4F6C_DD1D
    while !wallStop.load(ordering: .relaxed) {
        random ^= random << 13; random ^= random >> 7; random ^= random << 17
        let cycle = 5_000_000 + Int64(random % 10_000_000)
        wallSleepPart(Int(cycle * 7 / 10))
        sink ^= wallComputePart(cycle * 3 / 10)
    }
    if sink == 42 { print("unlikely") }
}

@Suite("Wall-clock profiles (/debug/fgprof)")
struct WallProfileTests {
    @Test("a 10 s fgprof and 20 dumps leave blocked threads alone, reach their Swift callers, and split wall time right")
    func tenSecondsOfBlockedThreads() throws {
        let outcome = try ChildProcessTest.expectScenario("wallScenario", scenario: "wall-fgprof", timeoutSeconds: 120)
        print(outcome.output.split(separator: "\n").filter { $0.hasPrefix("wall:") }.joined(separator: "\n"))
    }

    /// Run by `tenSecondsOfBlockedThreads` in a child process.
    @Test(.enabled(if: ChildProcessTest.scenario == "wall-fgprof"))
    func wallScenario() throws {
        // readLine() reads standard input: a pipe nobody writes to until the end.
        var stdinPipe: [Int32] = [-1, -1]
        try #require(pipe(&stdinPipe) == 0 && dup2(stdinPipe[0], 0) == 0)
        var pipes: [[Int32]] = []
        for _ in 0..<3 {
            var p: [Int32] = [-1, -1]
            try #require(pipe(&p) == 0)
            pipes.append(p)
        }
        let condition = WallCondition()
        let (readFD, pollFD, epollFD) = (pipes[0][0], pipes[1][0], pipes[2][0])
        let roles: [(name: String, function: String, body: @Sendable () -> Void)] = [
            ("w-nanosleep", "wallBlockNanosleep", { wallBlockNanosleep() }),
            ("w-read", "wallBlockPipeRead", { wallBlockPipeRead(readFD) }),
            ("w-poll", "wallBlockPoll", { wallBlockPoll(pollFD) }),
            ("w-epoll", "wallBlockEpoll", { wallBlockEpoll(epollFD) }),
            ("w-condwait", "wallBlockCondWait", { wallBlockCondWait(condition) }),
            ("w-readline", "wallBlockReadLine", { wallBlockReadLine() }),
            ("w-split", "wallSplit", { wallSplit() }),
            ("w-alternate", "wallAlternate", { wallAlternate() }),
        ]
        for role in roles {
            let name = role.name, body = role.body
            // They stay blocked until the child exits: detached, so that no
            // thread is left unjoined (ThreadSanitizer reports that as a leak).
            pthread_detach(try #require(faultSpawn { cpprof_set_thread_name(name); body() }))
        }
        usleep(300_000) // into their calls

        let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
        let port = try #require(server.port)
        // 20 dumps during the profile, from another thread.
        let dumper = try #require(faultSpawn {
            usleep(500_000)
            for _ in 0..<20 {
                _ = try? TestHTTP.request(port: port, target: "/debug/pprof/goroutine?debug=2")
                usleep(350_000)
            }
        })
        let slept0 = wallSleptNanoseconds.load(ordering: .relaxed), computed0 = wallComputedNanoseconds.load(ordering: .relaxed)
        let response = try TestHTTP.request(port: port, target: "/debug/fgprof?seconds=10", timeoutSeconds: 60)
        let slept = wallSleptNanoseconds.load(ordering: .relaxed) - slept0
        let computed = wallComputedNanoseconds.load(ordering: .relaxed) - computed0
        pthread_join(dumper, nil)
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "application/octet-stream")

        // Not one blocked call returned early.
        let early = wallEarlyReturns.withLock { $0 }
        print("wall: early returns \(early)")
        #expect(early.isEmpty, "early returns: \(early)")

        let p = try DecodedProfile(gzipped: response.body)
        #expect(p.sampleTypes.map { "\(p.string($0.type))/\(p.string($0.unit))" } == ["samples/count", "wall/nanoseconds"])
        #expect(p.string(p.periodType.type) == "wall" && p.string(p.periodType.unit) == "nanoseconds")
        func thread(_ s: DecodedProfile.Sample) -> String? {
            s.labels.first { p.string($0.key) == "thread_name" }.map { p.string($0.str) }
        }
        for role in roles {
            let samples = p.samples.filter { thread($0) == role.name }
            #expect(!samples.isEmpty, "no sample of \(role.name)")
            // Every blocked thread's stack reaches its Swift function.
            let reaching = samples.filter { s in p.functionNames(s).contains { $0.contains(role.function) } }
            let wall = samples.reduce(Int64(0)) { $0 + $1.values[1] }
            let reachingWall = reaching.reduce(Int64(0)) { $0 + $1.values[1] }
            print("wall: \(role.name) samples \(samples.count) wall \(Double(wall) / 1e9) s, reaching \(role.function): \(Double(reachingWall) / Double(max(wall, 1)))")
            if role.name != "w-split" && role.name != "w-alternate" {
                #expect(reachingWall * 100 >= wall * 99, "\(role.name): \(reachingWall) of \(wall) ns reach \(role.function)")
            }
            // Its wall time adds up to the window (it existed throughout).
            #expect(abs(Double(wall) / Double(p.durationNanos) - 1) < 0.03, "\(role.name): \(wall) ns in a \(p.durationNanos) ns window")
        }
        // The split thread: shares within 3 points of what it measured.
        let split = p.samples.filter { thread($0) == "w-split" }
        func share(_ function: String) -> Double {
            let total = split.reduce(Int64(0)) { $0 + $1.values[1] }
            let part = split.filter { s in p.functionNames(s).contains { $0.contains(function) } }.reduce(Int64(0)) { $0 + $1.values[1] }
            return Double(part) / Double(max(total, 1))
        }
        let truthSleep = Double(slept) / Double(slept + computed)
        for c in p.comments { print("wall: comment \(p.string(c))") }
        print("wall: split sleep share \(share("wallSleepPart")) compute \(share("wallComputePart")); measured sleep \(truthSleep)")
        // The 3-point bound holds while the sampler gets a CPU on time. On a
        // saturated machine (every core busy) it gets one mostly when another
        // thread blocks, its instants lean toward waits, and the profile says
        // so in its comments (late ticks); there the bound is a known issue:
        // 5 of 11 runs beside two `yes` processes were within 3 points
        // (Docs/Design.md, "Wall-clock profiles").
        let lateTicks = try #require(wallCommentValue(p, "late_ticks"))
        let ticks = try #require(wallCommentValue(p, "ticks"))
        let saturated = Double(lateTicks) > WallProfiler.lateTicksWorthSaying * Double(ticks)
        print("wall: late ticks \(lateTicks) of \(ticks); saturated: \(saturated)")
        withKnownIssue("wall shares of a 70/30 sleep/compute thread on a saturated machine (\(lateTicks) of \(ticks) ticks late)",
                       isIntermittent: true) {
            #expect(abs(share("wallSleepPart") - truthSleep) < 0.03)
            #expect(abs(share("wallComputePart") - (1 - truthSleep)) < 0.03)
            // Even the order of the two: with 219 of 569 ticks late (the
            // machine's builds beside the suite), the profile gave the
            // compute part 0.50 and the sleep part 0.40 of a thread that
            // measured 0.64 asleep.
            #expect(share("wallSleepPart") > share("wallComputePart"))
        } when: {
            saturated
        }
        #expect(saturated == p.comments.contains { p.string($0).contains("ticks started over") },
                "the profile says it was saturated exactly when its late ticks say so")
        // What holds regardless: both parts are seen.
        #expect(share("wallComputePart") > 0.1 && share("wallSleepPart") > 0.1)

        // The alternating thread: half its time in each sleep, though blocked
        // at the same sp and pc in both (a reused unwind told them apart).
        let alternate = p.samples.filter { thread($0) == "w-alternate" }
        func alternateShare(_ function: String) -> Double {
            let total = alternate.reduce(Int64(0)) { $0 + $1.values[1] }
            let part = alternate.filter { s in p.functionNames(s).contains { $0.contains(function) } }
                .reduce(Int64(0)) { $0 + $1.values[1] }
            return Double(part) / Double(max(total, 1))
        }
        print("wall: alternate A \(alternateShare("wallSleepA")) B \(alternateShare("wallSleepB"))")
        #expect(alternateShare("wallSleepA") > 0.3 && alternateShare("wallSleepB") > 0.3,
                "A \(alternateShare("wallSleepA")) B \(alternateShare("wallSleepB"))")
        // Unwinds were reused at all (else the above proves nothing about them).
        let reused = p.comments.map { p.string($0) }.compactMap { comment -> Int? in
            guard let range = comment.range(of: "their last unwind reused=") else { return nil }
            return Int(comment[range.upperBound...].prefix { $0.isNumber })
        }.first
        #expect((reused ?? 0) > 0, "comments: \(p.comments.map { p.string($0) })")

        // The real client reads it.
        let file = try GoPprof.temporaryFile(response.body, name: "fgprof.pb.gz")
        let top = try GoPprof.run(["-top", "-sample_index=wall", file])
        #expect(top.contains("wallComputePart"), "\(top.prefix(3000))")

        // Folded: `frames count` lines.
        let folded = try TestHTTP.request(port: port, target: "/debug/fgprof?seconds=1&format=folded")
        #expect(folded.status == 200)
        let lines = String(decoding: folded.body, as: UTF8.self).split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let parts = line.split(separator: " ")
            #expect(parts.count >= 2 && Int(parts.last!) != nil && !line.hasPrefix(";"), "bad folded line: \(line)")
        }
        #expect(lines.contains { $0.contains("wallBlockEpoll") }, "\(lines.prefix(20))")
        print("wallScenario: done")
        // Wake the ones that can be woken; the sleeper stays (the process exits).
        wallStop.store(true, ordering: .relaxed)
        condition.broadcast()
        for fd in [stdinPipe[1], pipes[0][1], pipes[1][1], pipes[2][1]] {
            _ = write(fd, "x\n", 2)
        }
        server.stop()
    }

    @Test("fgprof rejects bad parameters the way Go does")
    func badParameters() throws {
        let endpoints = PprofEndpoints(settings: EndpointSettings(cpuSamplingRate: 100, maxProfileSeconds: 5))
        for (query, status) in [("seconds=0", 400), ("seconds=abc", 400), ("seconds=6", 400), ("seconds=1&format=svg", 400)] {
            let r = endpoints.handle(HTTPRequest(method: "GET", target: "/debug/fgprof?\(query)", path: "/debug/fgprof",
                                                 rawQuery: query, headers: [], body: []))
            #expect(r.status == status, "\(query): \(r.status)")
            #expect(r.headers.contains { $0 == ("X-Go-Pprof", "1") })
        }
        let post = endpoints.handle(HTTPRequest(method: "POST", target: "/debug/fgprof", path: "/debug/fgprof",
                                                rawQuery: "", headers: [], body: []))
        #expect(post.status == 405)
    }
}

/// The integer after "`name`=" in a profile's comments.
private func wallCommentValue(_ p: DecodedProfile, _ name: String) -> Int? {
    for comment in p.comments {
        let text = p.string(comment)
        for field in text.split(separator: " ") where field.hasPrefix(name + "=") {
            if let value = Int(field.dropFirst(name.count + 1)) { return value }
        }
    }
    return nil
}
