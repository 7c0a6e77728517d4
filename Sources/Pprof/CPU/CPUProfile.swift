/// What one CPU profile request collected while it was subscribed to the
/// sampling session (`CPUProfiler`): its running counts, turned into the
/// profile model (`ProfileData`) when the window ends.
struct CPUProfile: Sendable {
    /// Sample counts per stack. Stacks are leaf first, adjusted for
    /// symbolization (exact leaf PC, return addresses minus one).
    var stacks: [[UInt64]: StackCounts] = [:]
    var startWallNanoseconds: Int64 = 0
    var durationNanoseconds: Int64 = 0
    var periodNanoseconds: Int64 = 0
    /// Samples lost because the handler's ring was full.
    var droppedSamples: UInt64 = 0
    /// Samples whose stack could not be bounded, kept as the leaf frame only.
    var leafOnlySamples: UInt64 = 0
    /// Whether per-thread CPU timers drove the sampling (else process-wide).
    var perThreadTimers = true
    /// Threads left without a timer (RLIMIT_SIGPENDING share used up).
    var threadsWithoutTimer: UInt64 = 0
    /// Sampling stopped because something else took SIGPROF.
    var handlerLost = false
    /// What the async chain walk did meanwhile (AsyncStacks.comment).
    var asyncComment: String?

    struct StackCounts: Sendable {
        var samples: Int64 = 0
        var periods: Int64 = 0

        mutating func add(periods weight: Int64) {
            samples += 1
            periods += weight
        }
    }

    mutating func add(stack: [UInt64], weight: Int64) {
        stacks[stack, default: StackCounts()].add(periods: weight) // one hash, modified in place
    }

    var totalSamples: Int64 { stacks.values.reduce(0) { $0 + $1.samples } }
}

extension CPUProfile {
    /// The profile in Go's shape: `samples/count` and `cpu/nanoseconds`.
    func profileData() -> ProfileData {
        var data = ProfileData(
            sampleTypes: [ValueType(type: "samples", unit: "count"), ValueType(type: "cpu", unit: "nanoseconds")],
            periodType: ValueType(type: "cpu", unit: "nanoseconds"),
            period: periodNanoseconds)
        data.timeNanos = startWallNanoseconds
        data.durationNanos = durationNanoseconds
        data.samples.reserveCapacity(stacks.count)
        for (stack, counts) in stacks {
            data.samples[ProfileData.Key(addresses: stack)] = [counts.samples, counts.periods * periodNanoseconds]
        }
        data.comments.append("swift-pprof: dropped_samples=\(droppedSamples) leaf_only_samples=\(leafOnlySamples)")
        if let asyncComment { data.comments.append(asyncComment) }
        if threadsWithoutTimer > 0 {
            data.comments.append("swift-pprof: \(threadsWithoutTimer) threads were not sampled: the per-thread timer limit (a quarter of RLIMIT_SIGPENDING) was reached, or the kernel refused their timers")
        }
        if handlerLost {
            data.comments.append("swift-pprof: sampling stopped early: another SIGPROF handler replaced the profiler's (or SIGPROF was reset)")
        }
        if !perThreadTimers {
            data.comments.append("swift-pprof: per-thread CPU timers unavailable; sampled with the process-wide ITIMER_PROF")
        }
        return data
    }
}
