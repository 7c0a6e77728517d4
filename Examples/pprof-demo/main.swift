// pprof-demo: a process with recognisable work on several threads and a
// pprof server beside it, to see swift-pprof work within a minute.
import Glibc
import Pprof

var configuration = PprofServer.Configuration()
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--pprof-address":
        guard let value = arguments.popFirst() else {
            printError("--pprof-address needs HOST:PORT")
            exit(2)
        }
        do {
            configuration = try PprofServer.Configuration(listenAddress: value)
        } catch {
            printError("pprof-demo: \(error)")
            exit(2)
        }
    case "-h", "--help":
        print("usage: pprof-demo [--pprof-address HOST:PORT]   (default 127.0.0.1:6060)")
        exit(0)
    default:
        printError("pprof-demo: unknown argument \(argument); try --help")
        exit(2)
    }
}

let server: PprofServer
do {
    server = try PprofServer.start(configuration)
} catch {
    printError("pprof-demo: cannot start the pprof server: \(error)")
    exit(1)
}

DemoWorkloads.startAll()

let base = server.baseURL ?? "http://\(configuration.host):\(configuration.port)"
printOut("""
    pprof-demo is running: hashing, sorting, prime counting and text rendering on four threads.

    Look at it with:
      go tool pprof -top \(base)/debug/pprof/profile?seconds=5
      go tool pprof -http=127.0.0.1:8080 \(base)/debug/pprof/profile?seconds=10
      curl \(base)/debug/pprof/

    Press Ctrl-C to stop.
    """)

// Park the main thread; the workers and the server run on their own threads.
while true { pause() }

func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// Unbuffered, so the banner shows even when stdout is a pipe and we never exit.
func printOut(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
}
