import CPprof
import Dispatch
import Glibc
import Pprof

/// `handler-cost`: the SIGPROF handler's recording path, per sample.
enum HandlerCost {
    struct Options {
        var batches = 2000
        var perBatch = 100
        var depth = 30
        var summary: String?
    }

    static func run(_ options: Options) {
        let summary = Summary(path: options.summary)
        printOut("## handler-cost: \(options.batches) batches of \(options.perBatch) samples, "
                 + "called below \(options.depth) Swift frames")

        // Warm-up: one pass over the whole ring, so first-touch page faults
        // of its cells are not counted.
        _ = measure(direct: true, options, batches: 4096 / options.perBatch + 1)

        let direct = measure(direct: true, options, batches: options.batches)
        report("direct call of the handler", direct, options)
        summary.record("handler.direct", [direct.distribution.median, direct.distribution.quantile(0.9),
                                          direct.distribution.quantile(0.99), Double(direct.samples),
                                          Double(direct.result.depth_min), Double(direct.result.depth_max),
                                          Double(direct.result.dropped)])

        let signal = measure(direct: false, options, batches: options.batches)
        report("self-sent SIGPROF (kernel delivery + handler + sigreturn)", signal, options)
        summary.record("handler.signal", [signal.distribution.median, signal.distribution.quantile(0.9),
                                          signal.distribution.quantile(0.99), Double(signal.samples),
                                          Double(signal.result.depth_min), Double(signal.result.depth_max),
                                          Double(signal.result.dropped)])

        // The same direct calls from inside an async task, below `asyncLevels`
        // awaiting async callers: the walk meets the executor boundary and
        // follows the context chain. The physical stack is kept at the size
        // of the runs above (the executor's frames count against `depth`).
        let async = measureInTask(options, batches: options.batches)
        report("direct call of the handler in an async task, \(asyncLevels) awaiting callers", async, options)
        summary.record("handler.async", [async.distribution.median, async.distribution.quantile(0.9),
                                         async.distribution.quantile(0.99), Double(async.samples),
                                         Double(async.result.depth_min), Double(async.result.depth_max),
                                         Double(async.result.dropped)])
        summary.write()
    }

    static let asyncLevels = 10
    /// Frames the executor adds below an async task's running function
    /// (runJob, swift_job_run, three of libdispatch's, the thread start).
    static let executorFrames = 7

    private final class Result: @unchecked Sendable { var measurement: Measurement? }

    private static func measureInTask(_ options: Options, batches: Int) -> Measurement {
        _ = PprofHandler() // publishes the executor's address range, as a server does
        var inner = options
        inner.depth = max(1, options.depth - executorFrames)
        let result = Result()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            result.measurement = await awaitingCallers(asyncLevels) { measure(direct: true, inner, batches: batches) }
            done.signal()
        }
        done.wait()
        return result.measurement!
    }

    /// `levels` nested async calls, then `body` in the innermost one.
    @inline(never)
    private static func awaitingCallers(_ levels: Int, _ body: () -> Measurement) async -> Measurement {
        if levels <= 1 { return body() }
        return await awaitingCallers(levels - 1, body)
    }

    struct Measurement {
        var distribution: Distribution // ns per sample, one value per batch
        var result: cpprof_bench_result
        var samples: Int
    }

    private static func measure(direct: Bool, _ options: Options, batches: Int) -> Measurement {
        var timings = [UInt64](repeating: 0, count: batches)
        var result = cpprof_bench_result()
        var code: Int32 = 0
        timings.withUnsafeMutableBufferPointer { buffer in
            // Called from below `depth` frames: the handler walks all of them.
            _ = atDepth(options.depth) {
                code = direct
                    ? cpprof_bench_handler(UInt32(batches), UInt32(options.perBatch), buffer.baseAddress, &result)
                    : cpprof_bench_self_signal(UInt32(batches), UInt32(options.perBatch), buffer.baseAddress, &result)
                return 0
            }
        }
        if code != 0 { fatal("handler benchmark failed: errno \(code)") }
        let perSample = timings.map { Double($0) / Double(options.perBatch) }
        return Measurement(distribution: Distribution(perSample), result: result, samples: batches * options.perBatch)
    }

    private static func report(_ what: String, _ m: Measurement, _ options: Options) {
        let d = m.distribution
        printOut("\(what): median \(format(d.median, 1)) ns/sample, p90 \(format(d.quantile(0.9), 1)), "
                 + "p99 \(format(d.quantile(0.99), 1)), min \(format(d.min, 1)), max \(format(d.max, 1)); "
                 + "\(m.result.recorded) samples recorded, \(m.result.dropped) dropped, "
                 + "\(m.result.depth_min)...\(m.result.depth_max) frames each")
    }
}
