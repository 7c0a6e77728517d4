import Testing

@testable import Pprof

// How a wall-clock profile shares one thread's window among its stacks:
// the on-CPU share (from schedstat) among its on-CPU samples, the rest among
// its blocked ones, and the samples alone when one kind has none.
@Suite("Wall-clock profiles: one thread's window shared among its stacks")
struct WallThreadStatesTests {
    private let compute = ProfileData.Key(addresses: [0x1000])
    private let parse = ProfileData.Key(addresses: [0x2000])
    private let sleep = ProfileData.Key(addresses: [0x3000])

    private func state(onCPU: [ProfileData.Key: Int64], blocked: [ProfileData.Key: Int64]) -> ThreadStates.State {
        // tid -1: no schedstat is read for it.
        var state = ThreadStates.State(tid: -1, key: sleep, stackHash: 0, onCPU: false, cpuNanoseconds: 0,
                                       firstSample: 0, lastSample: 1_000_000_007)
        state.pending = 0
        state.onCPUCounts = onCPU
        state.blockedCounts = blocked
        return state
    }

    private func wall(_ data: ProfileData) -> [ProfileData.Key: Int64] {
        data.samples.mapValues { $0[1] }
    }

    private func emptyProfile() -> ProfileData {
        ProfileData(sampleTypes: [ValueType(type: "samples", unit: "count"), ValueType(type: "wall", unit: "nanoseconds")],
                    periodType: ValueType(type: "wall", unit: "nanoseconds"), period: 1)
    }

    @Test("the kernel's on-CPU share goes to the on-CPU samples, whatever their number")
    func kernelSplit() {
        var data = emptyProfile()
        // 4 on-CPU samples against 6 blocked, but the thread was on a CPU 30 % of the window.
        ThreadStates.add(state(onCPU: [compute: 3, parse: 1], blocked: [sleep: 6]), runnableFraction: 0.3, into: &data)
        let w = wall(data)
        #expect(w.values.reduce(0, +) == 1_000_000_007)
        #expect(abs(Double(w[sleep] ?? 0) / 1_000_000_007 - 0.7) < 1e-6)
        #expect(abs(Double(w[compute] ?? 0) / 1_000_000_007 - 0.225) < 1e-6)
        #expect(abs(Double(w[parse] ?? 0) / 1_000_000_007 - 0.075) < 1e-6)
        #expect(data.samples[compute]?[0] == 3 && data.samples[sleep]?[0] == 6)
    }

    @Test("without samples of one kind, or without schedstat, the samples alone share the window")
    func samplesAlone() {
        for (s, fraction) in [(state(onCPU: [:], blocked: [sleep: 3, parse: 1]), 0.4),
                              (state(onCPU: [compute: 1], blocked: [sleep: 3]), nil)] as [(ThreadStates.State, Double?)] {
            var data = emptyProfile()
            ThreadStates.add(s, runnableFraction: fraction, into: &data)
            let w = wall(data)
            #expect(w.values.reduce(0, +) == 1_000_000_007)
            #expect(abs(Double(w[sleep] ?? 0) / 1_000_000_007 - 0.75) < 1e-6)
        }
    }
}
