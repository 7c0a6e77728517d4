// pprof-benchmarks: measures what the profilers cost (see
// Docs/Benchmarks.md; ./Scripts/benchmark.sh runs everything). Not a test:
// nothing here asserts a timing.
import Glibc

let usage = """
    usage: pprof-benchmarks SUBCOMMAND [options]
      handler-cost [--batches N] [--per-batch N] [--depth N] [--summary FILE]
      overhead     [--threads 1,2,32] [--pairs N] [--iterations N] [--depth N]
                   [--request-seconds N] [--latency-seconds N] [--latency-repetitions N] [--summary FILE]
      gperftools   [--threads 1,2,32] [--pairs N] [--iterations N] [--depth N] [--library PATH] [--summary FILE]
      workload-only --threads K --iterations N [--depth N] [--hz N] [--profile swift-pprof]
                   (runs once in this process and prints wall/cpu ns; the gperftools subcommand's child)
      heap-overhead --baseline NOHEAP_BINARY [--rounds N] [--workload-rounds N] [--threads 1,2]
                   [--iterations N] [--summary FILE]
      heap-tools   --baseline NOHEAP_BINARY [--rounds N] [--threads 1] [--iterations N] [--runs N] [--tcmalloc PATH]
                   [--heaptrack PATH] [--summary FILE]
      heap-endpoint [--live N] [--stacks N] [--requests N] [--summary FILE]
      thread-dump  [--threads 10,100,1000] [--requests N] [--busy N] [--summary FILE]
      wall-cost    [--threads 100] [--wake-ms 50] [--seconds 5] [--pairs 7] [--summary FILE]
      alloc-only   --mode micro|workload [--rate N] [--per-batch N] [--batches N] [--threads K] [--rounds N]
                   [--runs N] [--count-allocations 1]
                   (one child run of the heap benchmarks; prints a RESULT line)
      report FILE...                                          (Markdown table from --summary files)
    --iterations is the total per run, split evenly over the threads.
    NOHEAP_BINARY: this benchmark built with --disable-default-traits (no malloc interposer).
    """

var arguments = Array(CommandLine.arguments.dropFirst())
guard let subcommand = arguments.first else {
    printError(usage)
    exit(2)
}
arguments.removeFirst()

/// `--name value` pairs; anything else is an error.
@MainActor
func options(_ allowed: Set<String>) -> [String: String] {
    var result: [String: String] = [:]
    var i = 0
    while i < arguments.count {
        let name = arguments[i]
        guard name.hasPrefix("--"), allowed.contains(String(name.dropFirst(2))), i + 1 < arguments.count else {
            printError("pprof-benchmarks \(subcommand): bad argument \(name)\n\(usage)")
            exit(2)
        }
        result[String(name.dropFirst(2))] = arguments[i + 1]
        i += 2
    }
    return result
}

func int(_ options: [String: String], _ name: String, _ fallback: Int) -> Int {
    guard let text = options[name] else { return fallback }
    guard let value = Int(text), value > 0 else { fatal("--\(name) needs a positive integer, got \(text)") }
    return value
}

func intList(_ options: [String: String], _ name: String, _ fallback: [Int]) -> [Int] {
    guard let text = options[name] else { return fallback }
    let values = text.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
    guard !values.isEmpty else { fatal("--\(name) needs a list like 1,2,32") }
    return values
}

switch subcommand {
case "handler-cost":
    let o = options(["batches", "per-batch", "depth", "summary"])
    var h = HandlerCost.Options()
    h.batches = int(o, "batches", h.batches)
    h.perBatch = min(int(o, "per-batch", h.perBatch), 4096)
    h.depth = int(o, "depth", h.depth)
    h.summary = o["summary"]
    HandlerCost.run(h)
case "overhead":
    let o = options(["threads", "pairs", "iterations", "depth", "request-seconds", "latency-seconds",
                     "latency-repetitions", "summary"])
    var v = Overhead.Options()
    v.threadCounts = intList(o, "threads", v.threadCounts)
    v.pairs = int(o, "pairs", v.pairs)
    v.iterations = int(o, "iterations", v.iterations)
    v.depth = int(o, "depth", v.depth)
    v.requestSeconds = int(o, "request-seconds", v.requestSeconds)
    v.latencySeconds = int(o, "latency-seconds", v.latencySeconds)
    v.latencyRepetitions = int(o, "latency-repetitions", v.latencyRepetitions)
    v.summary = o["summary"]
    Overhead.run(v)
case "gperftools":
    let o = options(["threads", "pairs", "iterations", "depth", "library", "summary"])
    var g = Gperftools.Options()
    g.threadCounts = intList(o, "threads", g.threadCounts)
    g.pairs = int(o, "pairs", g.pairs)
    g.iterations = int(o, "iterations", g.iterations)
    g.depth = int(o, "depth", g.depth)
    g.library = o["library"] ?? g.library
    g.summary = o["summary"]
    Gperftools.run(g)
case "workload-only":
    let o = options(["threads", "iterations", "depth", "hz", "profile"])
    if let profile = o["profile"], profile != "swift-pprof" { fatal("--profile takes swift-pprof") }
    Gperftools.workloadOnly(threads: int(o, "threads", 1), iterations: int(o, "iterations", Overhead.Options().iterations),
                            depth: int(o, "depth", Overhead.Options().depth), hz: int(o, "hz", 100),
                            profileSelf: o["profile"] != nil)
case "heap-overhead":
    let o = options(["baseline", "rounds", "workload-rounds", "threads", "iterations", "summary"])
    var h = Heap.OverheadOptions()
    guard let baseline = o["baseline"] else { fatal("heap-overhead needs --baseline") }
    h.baseline = baseline
    h.rounds = int(o, "rounds", h.rounds)
    h.workloadRounds = int(o, "workload-rounds", h.workloadRounds)
    h.threadCounts = intList(o, "threads", h.threadCounts)
    h.iterations = int(o, "iterations", h.iterations)
    h.summary = o["summary"]
    Heap.overhead(h)
case "heap-tools":
    let o = options(["baseline", "rounds", "threads", "iterations", "runs", "tcmalloc", "heaptrack", "summary"])
    var h = Heap.ToolsOptions()
    guard let baseline = o["baseline"] else { fatal("heap-tools needs --baseline") }
    h.baseline = baseline
    h.rounds = int(o, "rounds", h.rounds)
    h.threadCounts = intList(o, "threads", h.threadCounts)
    h.iterations = int(o, "iterations", h.iterations)
    h.runs = int(o, "runs", h.runs)
    h.tcmalloc = o["tcmalloc"] ?? h.tcmalloc
    h.heaptrack = o["heaptrack"] ?? h.heaptrack
    h.summary = o["summary"]
    Heap.tools(h)
case "heap-endpoint":
    let o = options(["live", "stacks", "requests", "summary"])
    var h = Heap.EndpointOptions()
    h.live = int(o, "live", h.live)
    h.stacks = int(o, "stacks", h.stacks)
    h.requests = int(o, "requests", h.requests)
    h.summary = o["summary"]
    Heap.endpoint(h)
case "thread-dump":
    let o = options(["threads", "requests", "busy", "summary"])
    var t = ThreadDump.Options()
    t.threadCounts = intList(o, "threads", t.threadCounts)
    t.requests = int(o, "requests", t.requests)
    t.busy = int(o, "busy", t.busy)
    t.summary = o["summary"]
    ThreadDump.run(t)
case "wall-cost":
    let o = options(["threads", "wake-ms", "seconds", "pairs", "summary"])
    var w = WallCost.Options()
    w.threads = int(o, "threads", w.threads)
    w.wakeMilliseconds = int(o, "wake-ms", w.wakeMilliseconds)
    w.seconds = int(o, "seconds", w.seconds)
    w.pairs = int(o, "pairs", w.pairs)
    w.summary = o["summary"]
    WallCost.run(w)
case "alloc-only":
    let o = options(["mode", "rate", "per-batch", "batches", "threads", "rounds", "runs", "count-allocations"])
    var c = Heap.ChildOptions()
    c.mode = o["mode"] ?? c.mode
    if let rate = o["rate"] {
        guard let value = Int(rate), value >= 0 else { fatal("--rate needs a non-negative integer") }
        c.rate = value
    }
    c.perBatch = int(o, "per-batch", c.perBatch)
    c.batches = int(o, "batches", c.batches)
    c.threads = int(o, "threads", c.threads)
    c.rounds = int(o, "rounds", c.rounds)
    c.runs = int(o, "runs", c.runs)
    c.countAllocations = o["count-allocations"] == "1"
    Heap.childMain(c)
case "report":
    Report.print(Summary.read(paths: arguments))
case "-h", "--help", "help":
    printOut(usage)
default:
    printError("pprof-benchmarks: unknown subcommand \(subcommand)\n\(usage)")
    exit(2)
}
