import Testing
import Glibc
import Synchronization

/// CPU time of the calling thread, in nanoseconds.
func threadCPUNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Seeds the spin loops from a global so the optimizer cannot fold them.
nonisolated(unsafe) var workloadSeed: UInt64 = 0x9E3779B97F4A7C15

// Three CPU burners with different bodies, so that no linker folds them into one.
@inline(never) func spinAlpha(_ n: Int) -> UInt64 {
    var x = workloadSeed
    for i in 0..<n { x = x &* 6364136223846793005 &+ UInt64(truncatingIfNeeded: i) }
    return x
}

@inline(never) func spinBeta(_ n: Int) -> UInt64 {
    var x = workloadSeed ^ 0xABCDEF
    for i in 0..<n { x = (x ^ (x >> 13)) &* 0x2545F4914F6CDD1D &+ UInt64(truncatingIfNeeded: i) }
    return x
}

@inline(never) func spinGamma(_ n: Int) -> UInt64 {
    var x = workloadSeed &+ 17
    for i in 0..<n { x = (x << 7 | x >> 57) &+ (x ^ UInt64(truncatingIfNeeded: i &* 31)) }
    return x
}

/// Runs burners on pthreads and measures, with each thread's own CPU clock,
/// how much CPU time each burner really got: the ground truth a profile is
/// compared with.
final class MeasuredWorkload: Sendable {
    let alphaNanos = Atomic<Int64>(0)
    let betaNanos = Atomic<Int64>(0)
    let gammaNanos = Atomic<Int64>(0)
    let sink = Atomic<UInt64>(0)
    private let stopFlag = Atomic<Bool>(false)
    private let running = Atomic<Int>(0)

    /// Thread "mixed" runs alpha three times as long as beta; "gamma" runs gamma only.
    func start() {
        spawn { w in w.mixedLoop() }
        spawn { w in w.gammaLoop() }
    }

    /// Per-burner CPU nanoseconds so far: alpha, beta, gamma.
    func totals() -> [String: Double] {
        ["spinAlpha": Double(alphaNanos.load(ordering: .relaxed)),
         "spinBeta": Double(betaNanos.load(ordering: .relaxed)),
         "spinGamma": Double(gammaNanos.load(ordering: .relaxed))]
    }

    func startGammaOnly() {
        spawn { w in w.gammaLoop() }
    }

    func stop() {
        stopFlag.store(true, ordering: .sequentiallyConsistent)
        while running.load(ordering: .sequentiallyConsistent) > 0 { usleep(1000) }
    }

    @inline(never) func mixedLoop() {
        while !stopFlag.load(ordering: .relaxed) {
            measure(alphaNanos) { spinAlpha(300_000) }
            measure(alphaNanos) { spinAlpha(300_000) }
            measure(alphaNanos) { spinAlpha(300_000) }
            measure(betaNanos) { spinBeta(300_000) }
        }
    }

    @inline(never) func gammaLoop() {
        while !stopFlag.load(ordering: .relaxed) {
            measure(gammaNanos) { spinGamma(300_000) }
        }
    }

    private func measure(_ counter: borrowing Atomic<Int64>, _ body: () -> UInt64) {
        let t0 = threadCPUNanoseconds()
        let r = body()
        counter.add(threadCPUNanoseconds() - t0, ordering: .relaxed)
        sink.wrappingAdd(r, ordering: .relaxed)
    }

    private func spawn(_ body: @escaping @Sendable (MeasuredWorkload) -> Void) {
        running.add(1, ordering: .sequentiallyConsistent)
        let box = Unmanaged.passRetained(ThreadBody { body(self); self.running.subtract(1, ordering: .sequentiallyConsistent) })
        var tid = pthread_t()
        pthread_create(&tid, nil, { raw in
            let b = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
            b.run()
            return nil
        }, box.toOpaque())
        pthread_detach(tid)
    }
}

final class ThreadBody: Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// Every test that uses process-wide profiler state (SIGPROF for CPU sampling
/// and thread dumps, the heap sampling rate) lives under this suite: these
/// tests must not run at the same time as each other.
@Suite("Process-wide profiler state (serialized)", .serialized) enum ProcessWideStateTests {}

/// The suite's former name, so that tests written against it still compile.
