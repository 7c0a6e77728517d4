import CPprofTestHooks
import CPprof
import Foundation
import Synchronization
import Testing

@testable import Pprof

#if canImport(Glibc)
import Glibc
#endif

// MARK: - helpers

/// A raw pthread (`faultSpawn`) for the tests below, which cannot go on without it.
private func spawn(stackSize: Int = 0, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    guard let thread = faultSpawn(stackSize: stackSize, body) else { preconditionFailure("pthread_create failed") }
    return thread
}

/// A flag and a condition variable, shared with raw threads.
private final class Gate: @unchecked Sendable {
    let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private(set) var openLocked = false // read and written under `mutex`
    let spinStop = Atomic<Bool>(false)   // set when the gate opens
    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }
    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }
    var isOpen: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return openLocked
    }
    func openGate() {
        spinStop.store(true, ordering: .relaxed)
        pthread_mutex_lock(mutex)
        openLocked = true
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }
    /// Waits in pthread_cond_wait until the gate opens.
    func wait() {
        pthread_mutex_lock(mutex)
        while !openLocked { pthread_cond_wait(cond, mutex) }
        pthread_mutex_unlock(mutex)
    }
}

/// A value behind a lock, shared with raw threads.
/// Counts threads that reached their blocking point; records per-role facts.
private final class Registry: @unchecked Sendable {
    private let lock = NSLock()
    private var tids: [String: Int32] = [:]
    private var markers: [String: UInt64] = [:]
    func record(_ role: String, marker: UInt64) {
        lock.withLock {
            tids[role] = cpprof_gettid()
            markers[role] = marker
        }
    }
    func tid(_ role: String) -> Int32? { lock.withLock { tids[role] } }
    func marker(_ role: String) -> UInt64? { lock.withLock { markers[role] } }
    var count: Int { lock.withLock { tids.count } }
}


/// [start, end) of the function containing `address`, from its FDE.
private func functionBounds(containing address: UInt64) -> Range<UInt64>? {
    var start: UInt64 = 0
    var end: UInt64 = 0
    guard cpprof_function_bounds_for_testing(address, &start, &end) == 1, start < end else { return nil }
    return start..<end
}

/// True if some frame of `stack` lies inside the function holding `marker`.
private func stack(_ stack: [UInt64], passesThroughFunctionAt marker: UInt64) -> Bool {
    guard let range = functionBounds(containing: marker) else { return false }
    return stack.contains { range.contains($0) }
}

private func elapsedMilliseconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
}

// MARK: - blocking functions (each records an address inside itself first)

@inline(never) private func blockInCondWait(_ gate: Gate, _ registry: Registry) {
    registry.record("condwait", marker: cpprof_caller_address_for_testing())
    pthread_mutex_lock(gate.mutex)
    while !gate.openLocked { pthread_cond_wait(gate.cond, gate.mutex) }
    pthread_mutex_unlock(gate.mutex)
}

@inline(never) private func blockInRead(_ fd: Int32, _ registry: Registry) {
    registry.record("read", marker: cpprof_caller_address_for_testing())
    var byte: UInt8 = 0
    while read(fd, &byte, 1) < 0 && errno == EINTR {}
}

@inline(never) private func blockInSleep(_ gate: Gate, _ registry: Registry) {
    registry.record("sleep", marker: cpprof_caller_address_for_testing())
    while !gate.isOpen { usleep(200_000) }
}

@inline(never) private func spinBusy(_ gate: Gate, _ registry: Registry) {
    registry.record("busy", marker: cpprof_caller_address_for_testing())
    var x: UInt64 = 0x9E37_79B9_7F4A_7C15
    // Polls an atomic, not the gate's mutex: no libc frame (without frame
    // pointers) on top of this one when the dump catches it.
    while !gate.spinStop.load(ordering: .relaxed) {
        for _ in 0..<100_000 { x = x &* 6_364_136_223_846_793_005 &+ 1 }
    }
    if x == 42 { print("unlikely") }
}

@inline(never) private func createThreadHere(_ registry: Registry, _ gate: Gate) -> pthread_t {
    registry.record("creator", marker: cpprof_caller_address_for_testing())
    return spawn {
        registry.record("created", marker: 0)
        gate.wait()
    }
}

@inline(never) private func dumpFromHere(_ registry: Registry) -> [ThreadSnapshot] {
    registry.record("dumper", marker: cpprof_caller_address_for_testing())
    return ThreadDumper.dump()
}

/// State shared with the unwind hook (a C function pointer cannot capture).
private final class UnloadScenario: @unchecked Sendable {
    let stopRequested = Gate()
    let unloaded = Gate()
    let reallyUnloaded = Locked(false)
}
private let unloadScenario = UnloadScenario()

/// Address ranges of the mappings whose path contains `file`, from /proc/self/maps.
private func mappedRanges(of file: String) -> [Range<UInt64>] {
    // Read to EOF by hand: /proc files report a size of 0.
    let fd = open("/proc/self/maps", O_RDONLY)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    let maps = String(decoding: bytes, as: UTF8.self)
    return maps.split(separator: "\n").compactMap { line in
        // Executable mappings only: the symbolizer may keep a read-only
        // mapping of the file for its symbol tables after the library is gone.
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 1, fields[1].contains("x"),
              line.contains(file), let dash = line.firstIndex(of: "-"), let space = line.firstIndex(of: " "),
              let lo = UInt64(line[..<dash], radix: 16),
              let hi = UInt64(line[line.index(after: dash)..<space], radix: 16) else { return nil }
        return lo..<hi
    }
}

// MARK: - tests

extension ProcessWideStateTests {
    @Suite(.serialized) struct ThreadDumperTests {
        @Test func blockedAndBusyThreadsShowTheirSwiftCallers() throws {
            let gate = Gate()
            let registry = Registry()
            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)
            let readFD = fds[0]
            let writeFD = fds[1]
            let threads = [
                spawn { cpprof_set_thread_name("td-condwait"); blockInCondWait(gate, registry) },
                spawn { cpprof_set_thread_name("td-read"); blockInRead(readFD, registry) },
                spawn { cpprof_set_thread_name("td-sleep"); blockInSleep(gate, registry) },
                spawn { cpprof_set_thread_name("td-busy"); spinBusy(gate, registry) },
            ]
            defer {
                gate.openGate()
                var byte: UInt8 = 1
                _ = write(writeFD, &byte, 1)
                for t in threads { pthread_join(t, nil) }
                close(readFD)
                close(writeFD)
            }
            #expect(waitUntil { registry.count == 4 })
            usleep(100_000) // let them reach their blocking calls and burn some CPU

            let snapshots = dumpFromHere(registry)
            let byTid = Dictionary(snapshots.map { ($0.tid, $0) }, uniquingKeysWith: { a, _ in a })
            let expectations: [(role: String, name: String, state: String?)] = [
                ("condwait", "td-condwait", "sleeping"),
                ("read", "td-read", "sleeping"),
                ("sleep", "td-sleep", "sleeping"),
                ("busy", "td-busy", "running"),
            ]
            // The blocked ones were read from /proc, not signalled; the busy one was signalled.
            for role in ["condwait", "read", "sleep"] {
                let tid = try #require(registry.tid(role))
                #expect(byTid[tid]?.status == .readWhileBlocked, "\(role): \(String(describing: byTid[tid]?.status))")
            }
            #expect(byTid[try #require(registry.tid("busy"))]?.status == .answered)
            for e in expectations {
                let tid = try #require(registry.tid(e.role))
                var snap = try #require(byTid[tid], "thread \(e.name) missing from the dump")
                let marker = try #require(registry.marker(e.role))
                // Under ThreadSanitizer the busy loop calls into TSan's runtime,
                // which has no frame pointers: a dump that catches it there can
                // cut the loop's own frame (once in CI: the leaf in
                // __tsan::TraceSwitchPart, then a bogus frame, then the loop's
                // caller), as for syncStacksUnchanged in Scripts/sanitizers.sh.
                // There, up to 5 more dumps; otherwise the first is checked as written.
                if e.role == "busy" && runningUnderThreadSanitizer {
                    for _ in 0..<5 where !stack(snap.stack, passesThroughFunctionAt: marker) {
                        if let again = dumpFromHere(registry).first(where: { $0.tid == tid }) { snap = again }
                    }
                }
                #expect(snap.name == e.name)
                #expect(snap.answered, "\(e.name) did not answer: \(snap.status)")
                if let state = e.state { #expect(snap.state == state, "\(e.name) is \(snap.state)") }
                #expect(stack(snap.stack, passesThroughFunctionAt: marker),
                        "\(e.name): no frame in its Swift function; stack \(snap.stack.map { String($0, radix: 16) })")
            }
            let busyTid = try #require(registry.tid("busy"))
            let busy = try #require(byTid[busyTid])
            #expect(busy.cpuNanoseconds > 10_000_000, "busy thread CPU time \(busy.cpuNanoseconds) ns")

            // The dumping thread is included, captured without a signal.
            let me = try #require(byTid[cpprof_gettid()])
            #expect(me.status == .dumpingThread)
            let dumperMarker = try #require(registry.marker("dumper"))
            #expect(stack(me.stack, passesThroughFunctionAt: dumperMarker))
        }

        @Test func framePointerFallbackStillWalksSwiftCode() throws {
            let gate = Gate()
            let registry = Registry()
            let thread = spawn { cpprof_set_thread_name("td-fp-busy"); spinBusy(gate, registry) }
            defer { gate.openGate(); pthread_join(thread, nil) }
            #expect(waitUntil { registry.count == 1 })
            usleep(50_000) // past its bookkeeping, into the loop
            let marker = try #require(registry.marker("busy"))
            let bounds = try #require(functionBounds(containing: marker)) // resolved while DWARF is on
            // A dump may catch the thread inside glibc (no frame pointers), where
            // a frame-pointer walk rightly stops, or, on a loaded machine, not
            // get its answer before the deadline (descheduled): take the first
            // of up to 50 dumps that caught it answering in code that has them.
            cpprof_threads_set_dwarf_for_testing(0)
            var snapshots = ThreadDumper.dump()
            for _ in 0..<49 {
                if let s = snapshots.first(where: { $0.tid == registry.tid("busy") }),
                   s.answered, s.stack.contains(where: { bounds.contains($0) }) { break }
                snapshots = ThreadDumper.dump()
            }
            cpprof_threads_set_dwarf_for_testing(1)
            let snap = try #require(snapshots.first { $0.tid == registry.tid("busy") })
            #expect(snap.answered)
            // Busy in its own frame (or a callee with a frame pointer): the walk reaches it.
            #expect(snap.stack.contains { bounds.contains($0) }, "stack \(snap.stack.map { String($0, radix: 16) })")
            #expect(snap.stack.count >= 3, "frame-pointer walk too short: \(snap.stack.count)")
        }

        @Test("a thread dump says so when its stacks were walked without libunwind")
        func dumpSaysWhenLibunwindIsMissing() throws {
            // A thread that runs between dumps, so that each dump unwinds a stack.
            let stop = FaultFlag()
            let thread = try #require(faultSpawn { while !stop.isSet { usleep(1_000) } })
            defer { stop.set(); pthread_join(thread, nil) }
            func saysMissing() -> Bool {
                usleep(20_000) // the thread runs again: the dump has its stack to unwind
                return GoroutineProfile().collect().comments.contains(ThreadDumper.withoutLibunwindComment)
            }
            // The suite's machines have libunwind (Scripts/install-deps.sh).
            #expect(!saysMissing(), "libunwind was not available to this build or at run time")
            cpprof_threads_set_dwarf_for_testing(0)
            let withoutIt = saysMissing()
            cpprof_threads_set_dwarf_for_testing(1)
            #expect(withoutIt)
        }

        @Test func fiveHundredThreadsAllAnswer() throws {
            let gate = Gate()
            let tids = Locked(Set<Int32>())
            var threads: [pthread_t] = []
            for _ in 0..<500 {
                let thread = faultSpawn(stackSize: 256 * 1024) {
                    tids.withLock { _ = $0.insert(cpprof_gettid()) }
                    gate.wait()
                }
                guard let thread else { break }
                threads.append(thread)
            }
            defer {
                gate.openGate()
                for t in threads { pthread_join(t, nil) }
            }
            try #require(threads.count == 500, "pthread_create refused thread \(threads.count + 1) of 500")
            #expect(waitUntil { tids.withLock { $0.count } == 500 })
            usleep(50_000)
            let start = ContinuousClock.now
            let (snapshots, stats) = ThreadDumper.dumpWithStats(deadlineMilliseconds: 2000)
            let ms = elapsedMilliseconds(since: start)
            let mine = tids.withLock { $0 }
            let dumped = snapshots.filter { mine.contains($0.tid) }
            #expect(dumped.count == 500)
            let silent = dumped.filter { !$0.answered }
            #expect(silent.isEmpty, "\(silent.count) threads did not answer: \(silent.prefix(5).map { "\($0.tid) \($0.status)" })")
            // Every one of them is parked in pthread_cond_wait: DWARF gets past glibc.
            let shallow = dumped.filter { $0.stack.count < 4 }
            #expect(shallow.isEmpty, "\(shallow.count) stacks shorter than 4 frames")
            print("thread dump: \(snapshots.count) threads in \(ms) ms (prepare \(stats.prepare_ns / 1000) us, capture \(stats.capture_ns / 1000) us, unwind \(stats.unwind_ns / 1000) us)")
            #expect(stats.read_blocked >= 490, "\(stats.read_blocked) of 500 parked threads read from /proc; signalled \(stats.signalled)")

            // They have not run since: the next dump reuses their stacks and reads nothing for them.
            let again = Date.now
            let (second, stats2) = ThreadDumper.dumpWithStats(deadlineMilliseconds: 2000)
            print("thread dump again: \(second.count) threads in \(Date.now.timeIntervalSince(again) * 1000) ms, \(stats2.unchanged) unchanged")
            #expect(stats2.unchanged >= 490, "\(stats2.unchanged) unchanged")
            let before = Dictionary(dumped.map { ($0.tid, $0.stack) }, uniquingKeysWith: { a, _ in a })
            let changed = second.filter { mine.contains($0.tid) && before[$0.tid] != $0.stack }
            #expect(changed.isEmpty, "\(changed.count) stacks differ")
        }

        @Test func threadThatBlocksTheSignalIsReportedWithinTheDeadline() throws {
            let gate = Gate()
            let registry = Registry()
            // On a CPU, so only a signal could capture it, and it blocks that signal.
            let thread = spawn {
                cpprof_set_thread_name("td-blocker")
                _ = cpprof_threads_block_signal_for_testing(1)
                registry.record("blocker", marker: 0)
                while !gate.spinStop.load(ordering: .relaxed) {}
            }
            // Blocks the signal too, but sleeps: read from /proc, it needs none.
            let sleeper = spawn {
                cpprof_set_thread_name("td-blk-sleep")
                _ = cpprof_threads_block_signal_for_testing(1)
                blockInSleep(gate, registry)
            }
            defer { gate.openGate(); pthread_join(thread, nil); pthread_join(sleeper, nil) }
            #expect(waitUntil { registry.count == 2 })
            usleep(50_000)
            let tid = try #require(registry.tid("blocker"))

            let deadline = 100
            let start = ContinuousClock.now
            let snapshots = ThreadDumper.dump(deadlineMilliseconds: deadline)
            let ms = elapsedMilliseconds(since: start)
            let snap = try #require(snapshots.first { $0.tid == tid })
            #expect(!snap.answered)
            #expect(snap.stack.isEmpty)
            #expect(snap.status == .signalBlocked)
            #expect(snap.name == "td-blocker")
            // Not a timing assertion (the machine is noisy): a bound that only a hang exceeds.
            #expect(ms < 10_000, "dump took \(ms) ms with a \(deadline) ms deadline")
            // Everyone else still answered.
            #expect(snapshots.filter { $0.tid != tid && $0.status == .timedOut }.isEmpty)

            let sleeping = try #require(snapshots.first { $0.tid == registry.tid("sleep") })
            #expect(sleeping.status == .readWhileBlocked)
            #expect(stack(sleeping.stack, passesThroughFunctionAt: try #require(registry.marker("sleep"))))

            // The next dump knows it is blocked (from its SigBlk): still reported so.
            let second = ThreadDumper.dump(deadlineMilliseconds: deadline)
            #expect(second.first { $0.tid == tid }?.status == .signalBlocked)
        }

        @Test func dumpsSurviveDlopenAndThreadChurn() throws {
            let candidates = ["libbz2.so.1.0", "libexpat.so.1", "libffi.so.8", "libcrypt.so.1", "libm.so.6"]
            let libraries = candidates.filter { name in
                guard let h = dlopen(name, RTLD_NOW) else { return false }
                dlclose(h)
                return true
            }
            try #require(!libraries.isEmpty)
            let stop = Gate()
            let registry = Registry()
            let loads = Locked(0)
            let spawned = Locked(0)
            var workers: [pthread_t] = []
            defer {
                stop.openGate()
                for t in workers { pthread_join(t, nil) }
            }
            for w in 0..<2 {
                workers.append(try #require(faultSpawn {
                    cpprof_set_thread_name("td-dlopen-\(w)")
                    registry.record("dlopen-\(w)", marker: 0)
                    var i = w
                    while !stop.isOpen {
                        let name = libraries[i % libraries.count]
                        i += 1
                        if let h = dlopen(name, RTLD_NOW | RTLD_LOCAL) {
                            // Run code of the library now and then, so dumps catch it there.
                            if let f = dlsym(h, "BZ2_bzlibVersion") ?? dlsym(h, "XML_ExpatVersion") {
                                typealias Version = @convention(c) () -> UnsafePointer<CChar>?
                                _ = unsafeBitCast(f, to: Version.self)()
                            }
                            dlclose(h)
                            loads.withLock { $0 += 1 }
                        }
                    }
                }))
            }
            workers.append(try #require(faultSpawn {
                cpprof_set_thread_name("td-spawner")
                while !stop.isOpen {
                    var batch: [pthread_t] = []
                    for _ in 0..<8 {
                        if let t = faultSpawn(stackSize: 128 * 1024, { usleep(UInt32.random(in: 0..<2000)) }) { batch.append(t) }
                    }
                    for t in batch { pthread_join(t, nil) }
                    spawned.withLock { $0 += batch.count }
                }
            }))
            #expect(waitUntil { registry.count == 2 })
            let deadline = 200
            let began = ContinuousClock.now
            var dumps = 0
            var slowest = 0.0
            while elapsedMilliseconds(since: began) < 3000 {
                let start = ContinuousClock.now
                let snapshots = ThreadDumper.dump(deadlineMilliseconds: deadline)
                let ms = elapsedMilliseconds(since: start)
                slowest = max(slowest, ms)
                #expect(snapshots.contains { $0.tid == cpprof_gettid() && $0.answered })
                #expect(snapshots.filter { $0.name.hasPrefix("td-dlopen") }.count == 2)
                dumps += 1
            }
            #expect(dumps >= 5)
            #expect(slowest < 10_000, "slowest dump \(slowest) ms: only a hang gets here")
            #expect(loads.withLock { $0 } > 0)
            #expect(spawned.withLock { $0 } > 0)
            print("churn: \(dumps) dumps, slowest \(slowest) ms, \(loads.withLock { $0 }) dlopen/dlclose, \(spawned.withLock { $0 }) threads")
        }

        @Test func libraryUnloadedBetweenCaptureAndUnwind() throws {
            let library = "libbz2.so.1.0"
            try #require(dlopen(library, RTLD_NOW | RTLD_NOLOAD) == nil, "\(library) is already loaded")
            let scenario = unloadScenario
            let ready = Registry()
            let worker = spawn {
                cpprof_set_thread_name("td-bz2")
                guard let handle = dlopen(library, RTLD_NOW | RTLD_LOCAL),
                      let symbol = dlsym(handle, "BZ2_bzBuffToBuffCompress") else {
                    ready.record("failed", marker: 0)
                    return
                }
                typealias Compress = @convention(c) (UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<UInt32>?,
                                                     UnsafeMutablePointer<CChar>?, UInt32, Int32, Int32, Int32) -> Int32
                let compress = unsafeBitCast(symbol, to: Compress.self)
                var input = [CChar](repeating: 0, count: 1 << 20)
                for i in input.indices { input[i] = CChar(truncatingIfNeeded: (i &* 2_654_435_761) >> 13) }
                var output = [CChar](repeating: 0, count: (1 << 20) + (1 << 16))
                ready.record("bz2", marker: 0)
                while !scenario.stopRequested.isOpen { // busy inside libbz2
                    var outLen = UInt32(output.count)
                    _ = compress(&output, &outLen, &input, UInt32(input.count), 9, 0, 0)
                }
                dlclose(handle)
                scenario.reallyUnloaded.withLock { $0 = dlopen(library, RTLD_NOW | RTLD_NOLOAD) == nil }
                scenario.unloaded.openGate()
            }
            defer { scenario.stopRequested.openGate(); pthread_join(worker, nil) }
            #expect(waitUntil { ready.count == 1 })
            try #require(ready.tid("bz2") != nil, "could not load \(library)")
            usleep(50_000)
            let ranges = mappedRanges(of: "/libbz2.so")
            try #require(!ranges.isEmpty)

            // Between the copy and the unwind, the worker leaves libbz2 and unloads it.
            cpprof_threads_set_unwind_hook_for_testing {
                unloadScenario.stopRequested.openGate()
                let end = Date().addingTimeInterval(10)
                while !unloadScenario.unloaded.isOpen && Date() < end { usleep(1000) }
            }
            let snapshots = ThreadDumper.dump()
            cpprof_threads_set_unwind_hook_for_testing(nil)

            #expect(scenario.unloaded.isOpen)
            #expect(scenario.reallyUnloaded.withLock { $0 }, "\(library) stayed mapped: the test proves nothing")
            #expect(mappedRanges(of: "/libbz2.so").isEmpty)
            let snap = try #require(snapshots.first { $0.tid == ready.tid("bz2") })
            #expect(snap.answered)
            // Captured inside the library that was gone by the time it was unwound.
            #expect(snap.stack.contains { pc in ranges.contains { $0.contains(pc) } },
                    "stack \(snap.stack.map { String($0, radix: 16) })")
        }

        @Test func threadCreationStackNamesTheCreator() throws {
            let registry = Registry()
            let gate = Gate()
            let thread = createThreadHere(registry, gate)
            #expect(waitUntil { registry.tid("created") != nil })
            let tid = try #require(registry.tid("created"))
            let records = ThreadDumper.threadCreationStacks()
            let record = try #require(records.first { $0.tid == tid }, "no creation stack for \(tid)")
            let marker = try #require(registry.marker("creator"))
            #expect(stack(record.stack, passesThroughFunctionAt: marker),
                    "creation stack \(record.stack.map { String($0, radix: 16) })")
            gate.openGate()
            pthread_join(thread, nil)
            // Removed once the thread is gone.
            #expect(!ThreadDumper.threadCreationStacks().contains { $0.tid == tid })
        }

        @Test func stateNames() {
            #expect(String(cString: cpprof_thread_state_name(CChar(UInt8(ascii: "R")))) == "running")
            #expect(String(cString: cpprof_thread_state_name(CChar(UInt8(ascii: "S")))) == "sleeping")
            #expect(String(cString: cpprof_thread_state_name(CChar(UInt8(ascii: "D")))) == "disk sleep")
            #expect(String(cString: cpprof_thread_state_name(CChar(UInt8(ascii: "t")))) == "tracing stop")
            #expect(String(cString: cpprof_thread_state_name(CChar(UInt8(ascii: "Z")))) == "zombie")
        }
    }
}

// Drives the C sampler directly: it must not overlap other CPU sampling tests.
extension ProcessWideStateTests {
    @Suite struct ThreadDumpsAndCPUSampling {
        @Test func dumpsAndCPUSamplingShareSIGPROF() throws {
            _ = ThreadDumper.dump(deadlineMilliseconds: 50) // dump handler installed (it may be already)
            let rc = cpprof_cpu_start(2_000_000)
            try #require(rc == 0)
            defer { cpprof_cpu_stop() }
            let gate = Gate()
            let registry = Registry()
            let thread = spawn { cpprof_set_thread_name("td-cpu-busy"); spinBusy(gate, registry) }
            defer { gate.openGate(); pthread_join(thread, nil) }
            #expect(waitUntil { registry.count == 1 })
            let tid = try #require(registry.tid("busy"))
            for _ in 0..<10 {
                _ = cpprof_cpu_sync_threads()
                let snaps = ThreadDumper.dump()
                #expect(snaps.first { $0.tid == tid }?.answered == true)
                usleep(20_000)
            }
            var samples = [cpprof_sample](repeating: cpprof_sample(), count: 64)
            var drained = 0
            while true {
                let n = samples.withUnsafeMutableBufferPointer { cpprof_cpu_drain($0.baseAddress, 64) }
                if n == 0 { break }
                drained += n
            }
            #expect(drained > 0, "the CPU sampler recorded nothing while dumps ran")
        }
    }
}
