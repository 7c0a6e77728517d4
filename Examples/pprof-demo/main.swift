// pprof-demo: a small HTTP API with recognisable work (JSON encoding, hashing,
// allocation churn, a cache that grows, a contended lock, threads that block),
// a built-in load generator, and a pprof server beside it: a meaningful CPU
// profile, heap profile and thread dump within a minute of ./Scripts/demo.sh.
import Glibc
import Pprof

let usage = """
    usage: pprof-demo [--pprof-address HOST:PORT|unix:PATH] [--http-address HOST:PORT|off] [--load-threads N]

      --pprof-address   where /debug/pprof is served (default 127.0.0.1:6060, or $PPROF_LISTEN)
      --http-address    where the demo's own API is served (default 127.0.0.1:8080; off: none)
      --load-threads    threads calling the API in a loop (default 3; 0: wait for your requests)

    PPROF_* environment variables (PPROF_LISTEN, PPROF_BEARER_TOKEN, PPROF_MAX_PROFILE_SECONDS,
    PPROF_CPU_SAMPLING_RATE, PPROF_ENABLED) configure the pprof server; flags win over them.
    """

struct Options {
    var pprofAddress: String?
    var httpAddress: String? = "127.0.0.1:8080"
    var loadThreads = 3

    static func parse(_ list: [String]) -> Options {
        var options = Options()
        var arguments = list[...]
        func value(for flag: String) -> String {
            guard let value = arguments.popFirst() else {
                printError("pprof-demo: \(flag) needs a value; try --help")
                exit(2)
            }
            return value
        }
        while let argument = arguments.popFirst() {
            switch argument {
            case "--pprof-address": options.pprofAddress = value(for: argument)
            case "--http-address":
                let text = value(for: argument)
                options.httpAddress = text == "off" ? nil : text
            case "--load-threads":
                guard let n = Int(value(for: argument)), (0...64).contains(n) else {
                    printError("pprof-demo: --load-threads takes 0 to 64")
                    exit(2)
                }
                options.loadThreads = n
            case "-h", "--help":
                printOut(usage)
                exit(0)
            default:
                printError("pprof-demo: unknown argument \(argument); try --help")
                exit(2)
            }
        }
        return options
    }
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
let httpAddress = options.httpAddress
let loadThreads = options.loadThreads

// Defaults, then PPROF_* from the environment, then the command line.
var configuration: PprofServer.Configuration?
do {
    configuration = try PprofServer.Configuration.fromEnvironment(defaults: PprofServer.Configuration())
    if let pprofAddress = options.pprofAddress {
        let parsed = try PprofServer.Configuration(listenAddress: pprofAddress)
        configuration = configuration ?? PprofServer.Configuration()
        configuration!.host = parsed.host
        configuration!.port = parsed.port
        configuration!.unixSocketPath = parsed.unixSocketPath
    }
} catch {
    printError("pprof-demo: \(error)")
    exit(2)
}

var server: PprofServer?
if let configuration {
    do {
        server = try PprofServer.start(configuration, required: true)  // the demo exists to serve pprof
    } catch {
        printError("pprof-demo: cannot start the pprof server: \(error)")
        exit(1)
    }
}

if let httpAddress {
    do {
        try HTTPFrontEnd.start(address: httpAddress)
    } catch {
        printError("pprof-demo: cannot start the API: \(error)")
        exit(1)
    }
}
LoadGenerator.startBackgroundThreads()
LoadGenerator.start(threads: loadThreads)
if loadThreads > 0 { AsyncRoutes.startLoad(tasks: 2) } // async clients of GET /quote

var banner = "pprof-demo is running: \(loadThreads) load threads call its API" + (loadThreads > 0 ? ", 2 tasks its async GET /quote" : "")
banner += httpAddress.map { ", also served on http://\($0)/" } ?? ""
banner += ".\n\n"
if let server, let base = server.baseURL {
    let auth = configuration?.bearerToken != nil ? "  (with PPROF_BEARER_TOKEN set, curl needs -H \"Authorization: Bearer $PPROF_BEARER_TOKEN\")\n\n" : "\n"
    banner += """
        Within a minute, look at it in a browser (flame graph, no Go needed):
          \(base)/debug/pprof/ui\(configuration?.bearerToken != nil ? "#token=<your PPROF_BEARER_TOKEN>" : "")
        or with Go's tools:
          go tool pprof -top '\(base)/debug/pprof/profile?seconds=10'      # CPU: JSON, SHA-256, sorting
          go tool pprof -traces -focus=applyDiscounts '\(base)/debug/pprof/profile?seconds=5'  # async: the awaiting callers
          go tool pprof -top -cum -sample_index=inuse_space \(base)/debug/pprof/heap     # the session cache
          go tool pprof -top -cum -sample_index=alloc_space \(base)/debug/pprof/allocs   # allocation churn
          curl '\(base)/debug/pprof/goroutine?debug=2'     # every thread: blocked on a pipe, a condition, a lock
          go tool pprof -http=127.0.0.1:8081 '\(base)/debug/pprof/profile?seconds=20'   # flame graph in a browser
          curl \(base)/debug/pprof/
        \(auth)
        """
} else if let server, let path = server.configuration.unixSocketPath {
    banner += """
        pprof listens on unix:\(path). Look at it with:
          curl --unix-socket \(path) 'http://localhost/debug/pprof/goroutine?debug=2'
          socat TCP-LISTEN:6060,bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:\(path) &   # then open
          http://127.0.0.1:6060/debug/pprof/ui
          curl --unix-socket \(path) -o cpu.pb.gz 'http://localhost/debug/pprof/profile?seconds=10' && go tool pprof -top cpu.pb.gz

        """
} else {
    banner += "pprof is switched off (PPROF_ENABLED).\n\n"
}
if let httpAddress {
    banner += "The API (try it while profiling):\n"
    banner += "  curl 'http://\(httpAddress)/orders?count=3'\n"
    banner += "  curl -X POST --data-binary @/etc/os-release http://\(httpAddress)/hash\n"
    banner += "  curl http://\(httpAddress)/stats\n\n"
}
banner += "Press Ctrl-C to stop."
printOut(banner)

// Park the main thread; everything runs on named threads of its own.
while true { pause() }
