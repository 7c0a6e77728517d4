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
                            ("handler.signal", "SIGPROF handler via a real self-sent signal (kernel delivery + handler + sigreturn)")] {
            guard let v = s[key] else { continue }
            let target = key == "handler.direct" ? "median < 1000 ns" : "—"
            let met = key == "handler.direct" ? verdict(v[0] < 1000) : ""
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

        printOut("| measurement | median | spread | n | target | met |")
        printOut("|---|---|---|---|---|---|")
        for r in rows { printOut("| " + r.joined(separator: " | ") + " |") }
    }

    private static func verdict(_ ok: Bool) -> String { ok ? "yes" : "**no**" }
}
