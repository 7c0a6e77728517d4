import CPprof
import Glibc

/// Deterministic CPU-bound integer work: xorshift64 steps folded into a
/// checksum, one long dependency chain the optimizer cannot shortcut.
@inline(never)
func integerWork(iterations: Int, seed: UInt64) -> UInt64 {
    var x = seed | 1
    var sum: UInt64 = 0
    for _ in 0..<iterations {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        sum = sum &+ (x &* 0x2545_F491_4F6C_DD1D)
    }
    return sum
}

/// Runs `body` below `depth` real Swift frames, so that stack walks see a
/// realistic depth. The caller's own work after each recursive call keeps
/// the recursion from being turned into a loop.
@inline(never)
func atDepth(_ depth: Int, _ body: () -> UInt64) -> UInt64 {
    if depth <= 1 { return body() }
    return mix(atDepth(depth - 1, body), depth)
}

@inline(never)
func mix(_ value: UInt64, _ depth: Int) -> UInt64 {
    value ^ UInt64(truncatingIfNeeded: depth)
}

/// One measured run of the workload.
struct RunTimes {
    var wallNanoseconds: Int64
    /// CPU time of the whole process (every thread) during the run.
    var processCPUNanoseconds: Int64
    /// CPU time of the worker threads only, summed.
    var workerCPUNanoseconds: Int64
    var checksum: UInt64
}

/// K persistent worker threads that run a fixed amount of integer work on
/// command. The threads outlive the runs, so a profile started between runs
/// finds them already there (as in a server's thread pool).
final class WorkerPool: @unchecked Sendable {
    let threads: Int
    let depth: Int
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let startCondition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let doneCondition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `lock`.
    private var generation = 0
    private var remaining = 0
    private var iterationsPerThread = 0
    private var stopping = false
    private var workerCPU: [Int64]
    private var checksum: UInt64 = 0
    private var handles: [pthread_t] = []

    init(threads: Int, depth: Int) {
        self.threads = threads
        self.depth = depth
        workerCPU = Array(repeating: 0, count: threads)
        pthread_mutex_init(lock, nil)
        pthread_cond_init(startCondition, nil)
        pthread_cond_init(doneCondition, nil)
        for index in 0..<threads {
            handles.append(spawnThread(name: "bench-worker") { [self] in self.work(index: index) })
        }
    }

    /// Every worker does `iterationsPerThread` iterations; returns once all are done.
    func run(iterationsPerThread: Int) -> RunTimes {
        pthread_mutex_lock(lock)
        generation += 1
        remaining = threads
        self.iterationsPerThread = iterationsPerThread
        checksum = 0
        let wall0 = monotonicNanoseconds()
        let cpu0 = processCPUNanoseconds()
        pthread_cond_broadcast(startCondition)
        while remaining > 0 { pthread_cond_wait(doneCondition, lock) }
        let cpu1 = processCPUNanoseconds()
        let wall1 = monotonicNanoseconds()
        let result = RunTimes(wallNanoseconds: wall1 - wall0, processCPUNanoseconds: cpu1 - cpu0,
                              workerCPUNanoseconds: workerCPU.reduce(0, +), checksum: checksum)
        pthread_mutex_unlock(lock)
        return result
    }

    func shutdown() {
        pthread_mutex_lock(lock)
        stopping = true
        pthread_cond_broadcast(startCondition)
        pthread_mutex_unlock(lock)
        for handle in handles { pthread_join(handle, nil) }
        handles = []
    }

    private func work(index: Int) {
        var seen = 0
        pthread_mutex_lock(lock)
        while true {
            while generation == seen && !stopping { pthread_cond_wait(startCondition, lock) }
            if stopping { break }
            seen = generation
            let iterations = iterationsPerThread
            pthread_mutex_unlock(lock)

            let cpu0 = threadCPUNanoseconds()
            let sum = atDepth(depth) { integerWork(iterations: iterations, seed: UInt64(index) &+ 0x9E37_79B9) }
            let cpu1 = threadCPUNanoseconds()

            pthread_mutex_lock(lock)
            workerCPU[index] = cpu1 - cpu0
            checksum ^= sum
            remaining -= 1
            if remaining == 0 { pthread_cond_signal(doneCondition) }
        }
        pthread_mutex_unlock(lock)
    }
}

// MARK: - Clocks and threads

func monotonicNanoseconds() -> Int64 { readClock(CLOCK_MONOTONIC) }
func realtimeNanoseconds() -> Int64 { readClock(CLOCK_REALTIME) }
func processCPUNanoseconds() -> Int64 { readClock(CLOCK_PROCESS_CPUTIME_ID) }
func threadCPUNanoseconds() -> Int64 { readClock(CLOCK_THREAD_CPUTIME_ID) }

func readClock(_ clock: clockid_t) -> Int64 {
    var ts = timespec()
    clock_gettime(clock, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

func sleepNanoseconds(_ nanoseconds: Int64) {
    // Restarted by hand: SIGPROF ends nanosleep early while a profile runs.
    let deadline = monotonicNanoseconds() + nanoseconds
    while true {
        let left = deadline - monotonicNanoseconds()
        if left <= 0 { return }
        var ts = timespec(nanoseconds: left)
        _ = nanosleep(&ts, nil)
    }
}

extension timespec {
    init(nanoseconds: Int64) {
        self.init(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    }
}

private final class ThreadBody {
    let name: String
    let body: () -> Void
    init(name: String, body: @escaping () -> Void) { self.name = name; self.body = body }
}

/// A joinable pthread running `body` (no Dispatch, no Foundation).
func spawnThread(name: String, _ body: @escaping () -> Void) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadBody(name: name, body: body))
    var handle = pthread_t()
    let rc = pthread_create(&handle, nil, { raw in
        let box = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
        box.name.withCString { cpprof_set_thread_name($0) }
        box.body()
        return nil
    }, box.toOpaque())
    if rc != 0 {
        box.release()
        fatal("pthread_create failed: \(rc)")
    }
    return handle
}

func fatal(_ message: String) -> Never {
    printError("pprof-benchmarks: " + message)
    exit(1)
}

func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// Unbuffered stdout, so progress shows up as it happens.
func printOut(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
}
