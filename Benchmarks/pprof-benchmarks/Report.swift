/// `report`: one Markdown table from the subcommands' summary files, each
/// figure beside its target.
enum Report {
    static func print(_ s: [String: [Double]]) {
        var rows: [[String]] = []
        func row(_ cells: String...) { rows.append(cells) }
        func ratio(_ v: [Double]) -> String { format(v[0], 4) }
        func spread(_ v: [Double]) -> String {
            "\(format(v[1], 4)) … \(format(v[2], 4)) (IQR \(format(v[4], 4)) … \(format(v[5], 4)))"
        }

        for (key, what) in [("handler.direct", "SIGPROF handler, called directly"),
                            ("handler.signal", "SIGPROF handler via a real self-sent signal (kernel delivery + handler + sigreturn)"),
                            ("handler.async", "SIGPROF handler, called directly in an async task below 10 awaiting callers")] {
            guard let v = s[key] else { continue }
            let timed = key != "handler.signal"
            let target = timed ? "median < 1000 ns" : "—"
            let met = timed ? verdict(v[0] < 1000) : ""
            row("\(what), \(Int(v[4]))–\(Int(v[5])) frames walked, ns per sample", format(v[0], 0),
                "p90 \(format(v[1], 0)), p99 \(format(v[2], 0))", "\(Int(v[3])) samples", target, met)
        }

        let threadCounts = Set(s.keys.compactMap { key -> Int? in
            let parts = key.split(separator: ".")
            return parts.count == 3 && ["overhead", "gperftools", "child"].contains(parts[0]) ? Int(parts[1]) : nil
        }).sorted()
        for k in threadCounts {
            let ours = s["overhead.\(k).cpu"], theirs = s["gperftools.\(k).cpu"]
            if let v = ours {
                row("K=\(k): process CPU time ratio, profiled / unprofiled, swift-pprof in-process", ratio(v), spread(v),
                    "\(Int(v[3])) pairs", "≤ 1.01", verdict(v[0] <= 1.01))
            }
            let child = s["child.\(k).cpu"]
            if let v = child {
                row("K=\(k): process CPU time ratio, swift-pprof in child processes (gperftools' method)", ratio(v),
                    spread(v), "\(Int(v[3])) rounds", "≤ 1.01", verdict(v[0] <= 1.01))
            }
            if let v = theirs {
                var met = ""
                if let o = child ?? ours {
                    met = o[0] < v[0] ? "swift-pprof below" : "**swift-pprof not below**"
                    if o[2] >= v[1] && v[2] >= o[1] { met += " (ranges overlap)" }
                }
                row("K=\(k): process CPU time ratio, gperftools in child processes", ratio(v), spread(v),
                    "\(Int(v[3])) rounds", "above swift-pprof's", met)
            }
            if let v = s["overhead.\(k).wall"] {
                row("K=\(k): wall time ratio, swift-pprof", ratio(v), spread(v), "\(Int(v[3])) pairs", "—", "")
            }
            if let v = s["child.\(k).wall"] {
                row("K=\(k): wall time ratio, swift-pprof in child processes", ratio(v), spread(v),
                    "\(Int(v[3])) rounds", "—", "")
            }
            if let v = s["gperftools.\(k).wall"] {
                row("K=\(k): wall time ratio, gperftools", ratio(v), spread(v), "\(Int(v[3])) rounds", "—", "")
            }
            if let v = s["overhead.\(k).per_sample_ns"] {
                row("K=\(k): extra process CPU per sample, swift-pprof, end to end (CPU difference ÷ samples), µs",
                    format(v[0] / 1000, 1), "\(format(v[1] / 1000, 1)) … \(format(v[2] / 1000, 1))",
                    "\(Int(v[3])) pairs", "—", "")
            }
            if let v = s["overhead.\(k).worker_per_sample_ns"] {
                row("K=\(k): of which in the sampled threads (signal, handler, cache), µs per sample",
                    format(v[0] / 1000, 1), "\(format(v[1] / 1000, 1)) … \(format(v[2] / 1000, 1))",
                    "\(Int(v[3])) pairs", "—", "")
            }
            if let v = s["overhead.\(k).background_ns_per_s"] {
                row("K=\(k): of which in the profiler's threads (collector, HTTP), ms CPU per s of run",
                    format(v[0] / 1e6, 2), "\(format(v[1] / 1e6, 2)) … \(format(v[2] / 1e6, 2))",
                    "\(Int(v[3])) pairs", "—", "")
            }
            if let v = s["overhead.\(k).samples"] {
                let target = k >= 32 ? "0 dropped" : "—"
                let met = k >= 32 ? verdict(v[2] == 0) : ""
                row("K=\(k): samples received / expected (CPU time × Hz), swift-pprof",
                    "\(Int(v[0])) / \(format(v[1], 0)) = \(format(v[0] / v[1], 3))",
                    "per run \(format(v[6], 3)) … \(format(v[7], 3)); dropped \(Int(v[2])), leaf-only \(Int(v[3])), "
                        + "mean depth \(format(v[4], 1))",
                    "all profiled runs", target, met)
            }
            if let v = s["child.\(k).samples"] {
                row("K=\(k): samples received / expected, swift-pprof in child processes",
                    "\(Int(v[0])) / \(format(v[1], 0)) = \(format(v[0] / v[1], 3))", "dropped \(Int(v[2]))",
                    "all profiled runs", k >= 32 ? "0 dropped" : "—", k >= 32 ? verdict(v[2] == 0) : "")
            }
            if let v = s["gperftools.\(k).samples"] {
                row("K=\(k): samples received / expected, gperftools (whole child lifetime)",
                    "\(Int(v[0])) / \(format(v[1], 0)) = \(format(v[0] / v[1], 3))", "", "all profiled runs", "—", "")
            }
        }

        if let v = s["latency"] {
            let limit = v[0] + 1
            row("profile response time for seconds=\(Int(v[0])), busy threads, s", format(v[1], 3),
                "\(format(v[2], 3)) … \(format(v[3], 3)); dropped \(Int(v[5]))", "\(Int(v[4])) requests",
                "≤ \(format(limit, 0)) s", verdict(v[3] <= limit))
        }

        heapRows(s, row)
        threadRows(s, row)

        printOut("| measurement | median | spread | n | target | met |")
        printOut("|---|---|---|---|---|---|")
        for r in rows { printOut("| " + r.joined(separator: " | ") + " |") }
    }

    private static func verdict(_ ok: Bool) -> String { ok ? "yes" : "**no**" }

    private static func heapRows(_ s: [String: [Double]], _ row: (String...) -> Void) {
        let rates = [("default", "at the default rate (524288)", true), ("rate0", "at rate 0 (interposed, sampling off)", false),
                     ("rate1", "at rate 1 (every allocation sampled)", false)]
        for (kind, what) in [("malloc", "malloc+free pair (16–256 B)"), ("object", "Swift class alloc+release (48 B)")] {
            guard let none = s["heap.micro.\(kind).none"] else { continue }
            for (key, rate, targeted) in rates {
                guard let v = s["heap.micro.\(kind).\(key)"] else { continue }
                row("\(what): ns added by the interposer \(rate)", format(v[4], 2),
                    "IQR \(format(v[10], 2)) … \(format(v[11], 2)), range \(format(v[5], 2)) … \(format(v[6], 2)); "
                        + "from 10th percentiles \(format(v[7], 2)); \(format(v[0], 2)) vs \(format(none[0], 2)) ns",
                    "\(Int(v[3])) rounds", targeted ? "≤ 3 ns" : "—", targeted ? verdict(v[4] <= 3) : "")
            }
        }
        if let a = s["heap.workload.allocations"] {
            row("allocation workload: allocations per run (counted at rate 1)", format(a[0], 0),
                "\(format(a[0] / a[1], 1)) per round", "\(Int(a[1])) rounds per run", "—", "")
        }
        for k in [1, 2, 4, 8, 16, 32] {
            if let v = s["heap.workload.\(k).cpu"] {
                row("K=\(k): allocation workload, process CPU ratio, interposed (default rate) / no interposer", format(v[0], 4),
                    "\(format(v[1], 4)) … \(format(v[2], 4)) (IQR \(format(v[4], 4)) … \(format(v[5], 4)))",
                    "\(Int(v[3])) rounds", "≤ 1.02", verdict(v[0] <= 1.02))
            }
            if let v = s["heap.workload.\(k).wall"] {
                row("K=\(k): allocation workload, wall time ratio", format(v[0], 4),
                    "\(format(v[1], 4)) … \(format(v[2], 4)) (IQR \(format(v[4], 4)) … \(format(v[5], 4)))",
                    "\(Int(v[3])) rounds", "—", "")
            }
            if let v = s["heap.workload.\(k).per_allocation_ns"] {
                row("K=\(k): allocation workload, added CPU per allocation (CPU difference ÷ allocations), ns", format(v[0], 2),
                    "\(format(v[1], 2)) … \(format(v[2], 2)); unprofiled run \(format(v[4] / 1e6, 0)) ms CPU",
                    "\(Int(v[3])) rounds", "—", "")
            }
        }
        if let b = s["heap.endpoint.built"] {
            row("/heap setup: live samples tracked after \(Int(b[0])) live allocations at rate 1 from \(Int(b[1])) stacks",
                format(b[2], 0), "dropped (live-table bucket full) \(Int(b[3])); stacks in the table \(Int(b[4]))", "1 build",
                "—", "")
        }
        for (key, what, targeted) in [("proto", "`/debug/pprof/heap` (gzipped proto), rate 1 kept, ms", true),
                                      ("text", "`/debug/pprof/heap?debug=1` (text), rate 1 kept, ms", false),
                                      ("proto_default_rate", "`/debug/pprof/heap` (gzipped proto), same live samples, rate back at 524288, ms", false)] {
            guard let v = s["heap.endpoint.\(key)"] else { continue }
            var met = ""
            if targeted { met = v[0] < 50 ? (v[1] < 50 ? "yes (p90 too)" : "median yes, **p90 no**") : "**no**" }
            row(what, format(v[0], 1),
                "p90 \(format(v[1], 1)), range \(format(v[2], 1)) … \(format(v[3], 1)); process CPU per GET median "
                    + "\(v.count > 11 ? format(v[11], 1) : "?") (p90 \(v.count > 12 ? format(v[12], 1) : "?")); first GET "
                    + "\(format(v[8], 1)); \(format(v[9] / 1024, 0)) KiB, \(Int(v[10])) samples, live_samples \(Int(v[5]))",
                "\(Int(v[4])) GETs", targeted ? "< 50 ms" : "—", met)
        }
        let tools = [("pprof", "swift-pprof, default rate"), ("pprof_rate1", "swift-pprof, rate 1 (every allocation)"),
                     ("heaptrack", "heaptrack"), ("tcmalloc", "tcmalloc alone, no profiling (LD_PRELOAD)"),
                     ("gperftools", "gperftools heap profiler (tcmalloc + HEAPPROFILE)")]
        for k in [1, 2] {
            let ours = s["heaptools.\(k).pprof"]
            for (key, name) in tools {
                guard let v = s["heaptools.\(k).\(key)"] else { continue }
                var target = "—", met = ""
                if key == "heaptrack" || key == "gperftools", let o = ours {
                    target = "above swift-pprof's"
                    met = o[0] < v[0] ? "swift-pprof below" : "**swift-pprof not below**"
                }
                row("K=\(k): allocation workload CPU ratio vs unprofiled, child processes: \(name)", format(v[0], 3),
                    "\(format(v[1], 3)) … \(format(v[2], 3)); wall \(format(v[4], 3)); whole process tree CPU \(format(v[5], 3))",
                    "\(Int(v[3])) rounds", target, met)
            }
        }
    }

    private static func threadRows(_ s: [String: [Double]], _ row: (String...) -> Void) {
        for busy in 1...8 {
            for n in [10, 100, 1000, 10000] {
                for debug in [0, 2] {
                    guard let v = s["threads.b\(busy).\(n).debug\(debug)"] else { continue }
                    let targeted = n == 1000
                    var met = ""
                    if targeted { met = v[0] <= 50 ? (v[1] <= 50 ? "yes (p90 too)" : "median yes, **p90 no**") : "**no**" }
                    row("\(n) app threads (\(busy) busy): `/debug/pprof/goroutine\(debug == 0 ? "" : "?debug=2")` over loopback, ms",
                        format(v[0], 1), "p90 \(format(v[1], 1)), range \(format(v[2], 1)) … \(format(v[3], 1)); "
                            + "\(Int(v[5])) threads listed, \(Int(v[6])) without stack",
                        "\(Int(v[4])) GETs", targeted ? "≤ 50 ms" : "—", met)
                }
                if let v = s["threads.b\(busy).\(n).pause"] {
                    // Attributable to the dump: the difference between dump
                    // and control windows, at the median and at p90; met only
                    // if both are within the target.
                    let atMedian = v[0] - v[3], atP90 = v[1] - v[4]
                    row("\(n) app threads (\(busy) busy): longest gap a busy thread saw, during a dump / an equal window without, ms",
                        "\(format(v[0], 2)) / \(format(v[3], 2))",
                        "p90 \(format(v[1], 2)) / \(format(v[4], 2)); max \(format(v[2], 2)) / \(format(v[5], 2)); "
                            + "nanosleep EINTR per sleeper per dump \(format(v[7], 2)), read EINTR \(Int(v[8]))",
                        "\(Int(v[6])) + \(Int(v[6])) windows", "dump adds ≤ 5 ms",
                        "difference: median \(format(atMedian, 2)), p90 \(format(atP90, 2)) ms: "
                            + verdict(atMedian <= 5 && atP90 <= 5))
                }
            }
        }
        if let v = s["wall.cost"] {
            row("`/debug/fgprof` of 100 threads at 99 Hz: process CPU added, % of one core (profiled − unprofiled, same run)",
                format(v[0], 2), "range \(format(v[1], 2)) … \(format(v[2], 2))", "\(Int(v[3])) pairs", "≤ 2 %",
                verdict(v[0] <= 2))
        }
    }
}
