import CPprof
import Glibc
import Synchronization
import Testing

@testable import Pprof

// Faults around SIGPROF: an application that uses SIGPROF itself, threads
// that block it, fork() in the middle of a profile.

// MARK: - The application's own SIGPROF handler

/// Counters of the application's handler (globals: a C handler captures nothing).
let appSigprofCount = Atomic<Int>(0)
let appSigprofQueued = Atomic<Int>(0)
let appSigprofBadValue = Atomic<Int>(0)
/// The si_value the application sends with sigqueue.
let appSigprofValue: Int32 = 0x5150
let appSigprofClobbersErrno = Atomic<Bool>(true)

/// Whether this process runs with ThreadSanitizer's runtime.
let runningUnderThreadSanitizer = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil

@Suite("Faults: an application's own SIGPROF handler")
struct FaultSignalChainTests {
    @Test("an app that installed a SIGPROF handler before profiling keeps receiving its own SIGPROFs, during and after")
    func appHandlerIsChained() throws {
        // A fresh process, in which the library has installed no handler yet.
        try ChildProcessTest.expectScenario("sigprofChainScenario", scenario: "sigprof-chain", timeoutSeconds: 60)
    }

    /// Run by `appHandlerIsChained` in a child process.
    @Test(.enabled(if: ChildProcessTest.scenario == "sigprof-chain"))
    func sigprofChainScenario() throws {
        var current = sigaction()
        sigaction(SIGPROF, nil, &current)
        try #require(current.__sigaction_handler.sa_handler == nil, "SIGPROF already has a handler in this process")

        // The application's handler: counts, checks the value it sent, and
        // clobbers errno (a sloppy handler; ours must restore it anyway).
        // Not under ThreadSanitizer, which runs handlers itself, at points of
        // its choosing, and restores errno around them.
        appSigprofClobbersErrno.store(!runningUnderThreadSanitizer, ordering: .relaxed)
        var action = sigaction()
        action.__sigaction_handler.sa_sigaction = { _, info, _ in
            appSigprofCount.add(1, ordering: .relaxed)
            if let info, info.pointee.si_code == SI_QUEUE {
                appSigprofQueued.add(1, ordering: .relaxed)
                if info.pointee._sifields._rt.si_sigval.sival_int != appSigprofValue {
                    appSigprofBadValue.add(1, ordering: .relaxed)
                }
            }
            if appSigprofClobbersErrno.load(ordering: .relaxed) { errno = EIO }
        }
        action.sa_flags = SA_SIGINFO | SA_RESTART
        sigemptyset(&action.sa_mask)
        try #require(sigaction(SIGPROF, &action, nil) == 0)

        let stop = FaultFlag()
        let receiverTid = Atomic<Int32>(0)
        // Sleeps: uses no CPU, so no CPU-timer SIGPROF of ours is ever pending
        // on it to swallow one of the app's (standard signals do not queue).
        let receiver = try #require(faultSpawn {
            cpprof_set_thread_name("app-receiver")
            receiverTid.store(cpprof_gettid(), ordering: .relaxed)
            while !stop.isSet { usleep(2000) }
        })
        // Busy with errno set: every SIGPROF it takes (our timers, the app's
        // signals through our handler) must leave errno as it was.
        let errnoBroken = FaultCounter()
        let watched = FaultCounter()
        let watcher = try #require(faultSpawn {
            cpprof_set_thread_name("app-errno")
            var x = workloadSeed
            errno = 4242
            while !stop.isSet {
                for i in 0..<10_000 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(truncatingIfNeeded: i) }
                if errno != 4242 { errnoBroken.add(); errno = 4242 }
                watched.add()
            }
            if x == 42 { print("unlikely") }
        })
        defer {
            stop.set()
            pthread_join(receiver, nil)
            pthread_join(watcher, nil)
        }
        #expect(waitUntil { receiverTid.load(ordering: .relaxed) != 0 })

        /// Sends `count` SIGPROFs (pthread_kill to the receiver or the busy
        /// thread, sigqueue to the process), each after the previous arrived.
        func burst(_ count: Int) -> (sent: Int, lost: Int) {
            var lost = 0
            for i in 0..<count {
                let before = appSigprofCount.load(ordering: .relaxed)
                switch i % 3 {
                case 0: pthread_kill(receiver, SIGPROF)
                case 1: pthread_kill(watcher, SIGPROF)
                default:
                    var value = sigval()
                    value.sival_int = appSigprofValue
                    sigqueue(getpid(), SIGPROF, value)
                }
                if !waitUntil(seconds: 1, { appSigprofCount.load(ordering: .relaxed) > before }) { lost += 1 }
            }
            return (count, lost)
        }

        let before = burst(60)
        // The app's handler alone clobbers errno: the watcher sees it (the check has teeth).
        #expect(runningUnderThreadSanitizer || waitUntil(seconds: 2) { errnoBroken.count > 0 })
        usleep(50_000)
        let brokenByTheAppAlone = errnoBroken.count

        // A CPU profile runs (our handler installs itself over the app's).
        let profile = Mutex<CPUProfile?>(nil)
        let profiler = try #require(faultSpawn {
            let p = try? faultCPUProfile(seconds: 2)
            profile.withLock { $0 = p }
        })
        #expect(waitUntil { cpuStats().mode != 0 })
        let during = burst(150)
        pthread_join(profiler, nil)
        let samples = profile.withLock { $0?.totalSamples } ?? -1
        let foreignDuringProfile = cpuStats().foreign_signals

        // Thread dumps (their handler installs itself too), then the app's
        // signals again, after everything.
        var dumped = 0
        for _ in 0..<3 {
            let snapshots = ThreadDumper.dump()
            if snapshots.first(where: { $0.tid == receiverTid.load(ordering: .relaxed) })?.answered == true { dumped += 1 }
        }
        let after = burst(60)

        #expect(before.lost == 0, "before profiling: \(before.lost) of \(before.sent) lost")
        #expect(during.lost == 0, "during the profile: \(during.lost) of \(during.sent) lost")
        #expect(after.lost == 0, "after the profile and dumps: \(after.lost) of \(after.sent) lost")
        #expect(appSigprofQueued.load(ordering: .relaxed) >= 80)
        #expect(appSigprofBadValue.load(ordering: .relaxed) == 0, "si_value did not reach the app's handler intact")
        #expect(samples > 0, "the profile recorded nothing: our handler was not active")
        #expect(foreignDuringProfile >= UInt64(during.sent - during.lost), "our handler did not pass the app's signals on")
        #expect(dumped == 3, "the receiver did not answer the dumps")
        // Once ours is installed, it restores errno after chaining.
        let brokenSince = errnoBroken.count - brokenByTheAppAlone
        #expect(brokenSince == 0, "errno changed under the busy thread \(brokenSince) times (of \(watched.count) checks)")
        print("sigprofChainScenario: done; app signals \(appSigprofCount.load(ordering: .relaxed)), profile samples \(samples)")
    }
}

// MARK: - A stray SIGPROF right after start()

@Suite("Faults: a SIGPROF the library did not send")
struct FaultStraySignalTests {
    @Test("kill -PROF right after PprofServer.start(), before any profile or dump: the process lives and serves")
    func straySignalAfterStart() throws {
        // A fresh process: SIGPROF still has its default action (terminate).
        try ChildProcessTest.expectScenario("straySignalScenario", scenario: "stray-sigprof", timeoutSeconds: 60)
    }

    /// Run by `straySignalAfterStart` in a child process.
    @Test(.enabled(if: ChildProcessTest.scenario == "stray-sigprof"))
    func straySignalScenario() throws {
        var current = sigaction()
        sigaction(SIGPROF, nil, &current)
        try #require(current.__sigaction_handler.sa_handler == nil, "SIGPROF is not at its default action: the test proves nothing")
        let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
        defer { server.stop() }
        // Process-directed (kill), thread-directed (pthread_kill) and queued
        // (sigqueue, with a value that is not a dump's) SIGPROFs.
        for _ in 0..<3 {
            kill(getpid(), SIGPROF)
            pthread_kill(pthread_self(), SIGPROF)
            sigqueue(getpid(), SIGPROF, sigval(sival_int: 7))
        }
        usleep(100_000)
        let port = try #require(server.port)
        #expect(try TestHTTP.request(port: port, target: "/debug/pprof/cmdline").status == 200)
        print("straySignalScenario: done")
    }
}

// MARK: - Threads that block SIGPROF; fork()

extension ProcessWideStateTests {
    @Suite("Faults: blocked SIGPROF and fork()", .serialized)
    struct FaultSignalTests {
        @Test("threads that block SIGPROF: CPU profile and thread dump return, the dump names them, pending signals are harmless")
        func threadsBlockingSIGPROF() throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let port = try #require(server.port)
            let stop = FaultFlag()
            let blockedReady = FaultCounter()
            // The sleepers wait on this pipe, written at the end: a thread
            // waking every 100 ms was caught runnable by a dump on a loaded
            // machine (then it needs the signal it blocks, and has no stack).
            var wake: [Int32] = [0, 0]
            try #require(pipe(&wake) == 0)
            let wakeReader = wake[0]
            var threads: [pthread_t] = []
            defer {
                stop.set()
                var byte: UInt8 = 1
                _ = write(wake[1], &byte, 1)
                threads.forEach { pthread_join($0, nil) }
                close(wake[0])
                close(wake[1])
            }
            for i in 0..<4 {
                // Two busy (their CPU timers fire into the blocked mask), two asleep.
                threads.append(try #require(faultSpawn {
                    cpprof_set_thread_name("flt-blocked-\(i)")
                    var set = sigset_t()
                    sigemptyset(&set)
                    sigaddset(&set, SIGPROF)
                    pthread_sigmask(SIG_BLOCK, &set, nil)
                    blockedReady.add()
                    if i < 2 {
                        _ = faultBurn(until: stop)
                    } else {
                        var fd = pollfd(fd: wakeReader, events: Int16(POLLIN), revents: 0)
                        while !stop.isSet { _ = poll(&fd, 1, 5_000) }
                    }
                    // Unblocked with signals still pending: our timer's and the
                    // dump's, from sessions long over. Must be harmless.
                    pthread_sigmask(SIG_UNBLOCK, &set, nil)
                }))
            }
            threads.append(try #require(faultSpawn { cpprof_set_thread_name("flt-unblocked"); _ = faultBurn(until: stop) }))
            #expect(waitUntil { blockedReady.count == 4 })

            let cpu = Mutex<Result<StrictResponse, any Error>?>(nil)
            let cpuThread = try #require(faultSpawn {
                let r = Result { try TestHTTP.request(port: port, target: "/debug/pprof/profile?seconds=2", timeoutSeconds: 30) }
                cpu.withLock { $0 = r }
            })
            usleep(300_000)
            // Dumps while the profile runs: they must come back, the threads that
            // block the signal given up at the deadline (the 30 s timeout is the
            // hang detector; the first dump also loads symbols, slow under load).
            for debug in [2, 0, 1] {
                let r = try TestHTTP.request(port: port, target: "/debug/pprof/goroutine?debug=\(debug)", timeoutSeconds: 30)
                #expect(r.status == 200)
                if debug == 2 {
                    for i in 0..<4 {
                        #expect(r.text.contains("\"flt-blocked-\(i)\""), "flt-blocked-\(i) missing from the dump")
                    }
                    // The two busy ones need the signal they block; the two asleep
                    // are read from /proc and have their stacks.
                    let silent = r.text.split(separator: "\n").filter { $0.contains("(no stack: the thread blocks the dump signal)") }.count
                    #expect(silent >= 2, "\(silent) threads reported as blocking the signal")
                    for i in 2..<4 {
                        let block = r.text.components(separatedBy: "\n\n").first { $0.contains("\"flt-blocked-\(i)\"") } ?? ""
                        #expect(!block.contains("(no stack"), "a sleeping thread that blocks SIGPROF has no stack:\n\(block)")
                    }
                    #expect(r.text.contains("\"flt-unblocked\""))
                }
                if debug == 1 {
                    // Still Go's count format, which pprof reads back: threads
                    // without a stack must not break it.
                    let path = try GoPprof.temporaryFile(r.body, name: "goroutine-blocked.txt")
                    let top = try GoPprof.run(["-top", "-symbolize=none", path])
                    #expect(top.contains("Type: goroutine"))
                    #expect(r.text.contains("without a stack"), "the text does not say that some threads have no stack")
                }
                if debug == 0 {
                    let p = try DecodedProfile(gzipped: r.body)
                    let comment = p.comments.map { p.string($0) }.first { $0.contains("without_stack=") } ?? ""
                    #expect(!comment.contains("without_stack=0 "), "\(comment)")
                }
            }
            pthread_join(cpuThread, nil)
            let response = try #require(try cpu.withLock { $0 }?.get())
            #expect(response.status == 200)
            let p = try DecodedProfile(gzipped: response.body)
            #expect(p.samples.count > 0)
            #expect(p.samples.contains { p.functionNames($0).contains { $0.contains("faultBurn") } })

            stop.set()
            threads.forEach { pthread_join($0, nil) }
            threads = []
            #expect(cpuStats().mode == 0 && cpuStats().timers == 0)
            #expect(sigprofTimerCount() == 0)
            // Still serving after the pending signals were delivered.
            #expect(try TestHTTP.request(port: port, target: "/debug/pprof/cmdline").status == 200)
        }

        @Test("fork() while a CPU profile runs: the child inherits no timer, survives SIGPROF, can profile afresh, exits 0")
        func forkDuringProfile() throws {
            let stop = FaultFlag()
            let burner = try #require(faultSpawn { cpprof_set_thread_name("flt-fork-burn"); _ = faultBurn(until: stop) })
            defer { stop.set(); pthread_join(burner, nil) }
            let profile = Mutex<CPUProfile?>(nil)
            let profiler = try #require(faultSpawn {
                let p = try? faultCPUProfile(seconds: 2)
                profile.withLock { $0 = p }
            })
            var profilerJoined = false
            defer { if !profilerJoined { pthread_join(profiler, nil) } }
            #expect(waitUntil { cpuStats().mode != 0 && cpuStats().samples > 5 })
            try #require(sigprofTimerCount() > 0, "the parent has no SIGPROF timer: the test proves nothing")

            // Everything the child touches is prepared before fork(): after it,
            // the child calls only C functions, allocates nothing in Swift.
            let path = strdup("/proc/self/timers")!
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
            defer { free(path); buffer.deallocate() }
            var statuses: [Int32] = []
            for _ in 0..<5 {
                let pid = fork()
                if pid == 0 {
                    _exit(forkedChildCheck(timersPath: path, buffer: buffer))
                }
                try #require(pid > 0, "fork failed: errno \(errno)")
                var status: Int32 = 0
                let deadline = monotonicSeconds() + 10
                var reaped = false
                while monotonicSeconds() < deadline {
                    let r = waitpid(pid, &status, WNOHANG)
                    if r == pid { reaped = true; break }
                    if r < 0 && errno != EINTR { break }
                    usleep(5000)
                }
                if !reaped {
                    kill(pid, SIGKILL)
                    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                    Issue.record("the child hung")
                }
                statuses.append(status)
                usleep(100_000)
            }
            for status in statuses {
                let signal = status & 0x7F
                #expect(signal == 0, "the child died of signal \(signal)")
                #expect((status >> 8) & 0xFF == 0, "the child's check \((status >> 8) & 0xFF) failed (see forkedChildCheck)")
            }
            pthread_join(profiler, nil)
            profilerJoined = true
            #expect((profile.withLock { $0?.totalSamples } ?? 0) > 0, "the parent's profile was hurt")
            #expect(cpuStats().mode == 0)
        }
    }
}

/// What a child forked during a CPU profile checks. Exit codes: 0 fine;
/// 10 /proc/self/timers unreadable; 11 it lists a timer (inherited);
/// 12 the sampler still thinks it runs; 13 a fresh profile failed to start;
/// 14 it recorded no sample; 15 a timer was left after stopping.
/// Only C calls: no Swift allocation, no lock another thread might hold.
@inline(never) func forkedChildCheck(timersPath: UnsafePointer<CChar>, buffer: UnsafeMutableRawPointer) -> Int32 {
    func timersListed() -> Int {
        let fd = open(timersPath, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return -1 }
        let n = read(fd, buffer, 4096)
        close(fd)
        return n
    }
    if timersListed() != 0 { return timersListed() < 0 ? 10 : 11 }
    var stats = cpprof_cpu_stats()
    cpprof_cpu_get_stats(&stats)
    if stats.mode != 0 || stats.timers != 0 { return 12 }
    // A SIGPROF the child did not ask for: handled, not fatal.
    pthread_kill(pthread_self(), SIGPROF)
    // The child profiles afresh (the C sampler; pthread_atfork reset it).
    if cpprof_cpu_start(1_000_000) != 0 { return 13 }
    var ts = timespec()
    var x = workloadSeed
    repeat {
        for i in 0..<10_000 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(truncatingIfNeeded: i) }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    } while ts.tv_sec == 0 && ts.tv_nsec < 150_000_000 && x != 42
    cpprof_cpu_get_stats(&stats)
    cpprof_cpu_stop()
    if stats.samples == 0 { return 14 }
    if timersListed() != 0 { return 15 }
    return 0
}
