import Foundation
import Testing
@testable import Pprof

/// Debian's headless-capable Chromium, if installed (Scripts/install-deps.sh installs it).
private let chromiumPath: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { (path: String) in
    access(path, X_OK) == 0
}

/// `/debug/pprof/ui`: the page itself over HTTP, and rendered in a real browser.
extension ProcessWideStateTests {
    @Suite("Flame graph page", .serialized)
    struct FlameGraphPageTests {
        @Test("one self-contained page: strict CSP with a fresh nonce, no other host, listed on the index")
        func selfContained() throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let first = try TestHTTP.request(port: server.port!, target: "/debug/pprof/ui")
            let second = try TestHTTP.request(port: server.port!, target: "/debug/pprof/ui")
            #expect(first.status == 200 && first.header("Content-Type") == "text/html; charset=utf-8")
            let policy = try #require(first.header("Content-Security-Policy"))
            #expect(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"))
            let nonce = try #require(policy.split(separator: "'").first { $0.hasPrefix("nonce-") }).dropFirst(6)
            #expect(nonce.count >= 16)
            #expect(first.text.contains("<script nonce=\"\(nonce)\">") && first.text.contains("<style nonce=\"\(nonce)\">"))
            #expect(second.header("Content-Security-Policy") != policy, "a nonce is used once")
            #expect(!first.text.contains("http://") && !first.text.contains("https://") && !first.text.contains(" src="),
                    "nothing is loaded from anywhere")
            let index = try TestHTTP.request(port: server.port!, target: "/debug/pprof/")
            #expect(index.text.contains("<a href='ui'>ui</a>"))
            #expect(!index.text.contains("run GC"), "Go's gc parameter text means nothing here")
        }

        @Test("with a bearer token: the page loads without it, the data it fetches needs it")
        func bearerToken() throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0, bearerToken: "s3cret"))
            defer { server.stop() }
            let page = try TestHTTP.request(port: server.port!, target: "/debug/pprof/ui")
            #expect(page.status == 200 && !page.text.contains("s3cret"))
            let anonymous = try TestHTTP.request(port: server.port!, target: "/debug/pprof/goroutine?format=json")
            #expect(anonymous.status == 401)
            let authorized = try TestHTTP.request(port: server.port!, target: "/debug/pprof/goroutine?format=json",
                                                       headers: ["Authorization: Bearer s3cret"])
            #expect(authorized.status == 200 && authorized.text.hasPrefix("{\"sampleType\""))
        }

        @Test("over a Unix socket, through curl as through any proxy")
        func unixSocket() throws {
            let path = "/tmp/pprof-ui-\(getpid())-\(UInt16.random(in: 0...UInt16.max)).sock"
            let server = try PprofServer.start(.init(unixSocketPath: path))
            defer { server.stop() }
            for target in ["/debug/pprof/ui", "/debug/pprof/goroutine?format=json"] {
                let outcome = try runProcess(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                              "--unix-socket", path, "http://localhost\(target)"], timeoutSeconds: 30)
                #expect(outcome.output == "200", "\(target): \(outcome.output)")
            }
        }

        @Test("folded CPU profile over HTTP: the workload's hot functions, and totals equal to the pprof form's")
        func foldedCPU() throws {
            let workload = MeasuredWorkload()
            workload.start()
            let profile: CPUProfile
            do {
                defer { workload.stop() }
                profile = try faultCPUProfile(seconds: 1)
            }
            let builder = profile.profileData()
            let file = try GoPprof.temporaryFile(builder.gzipped(symbols: Symbolizer.shared), name: "cpu")
            defer { unlink(file) }
            let raw = goPprofRawTotals(try GoPprof.run(["-raw", file]))
            for (index, type) in ["samples", "cpu"].enumerated() {
                let stacks = try NamedStacks(builder, symbols: FunctionNames(base: Symbolizer.shared, full: false),
                                             sampleIndex: type)
                let lines = try parseFolded(ProfileTextFormats.folded(stacks))
                #expect(lines.reduce(0) { $0 + $1.value } == raw[index], "\(type)")
                if type == "cpu" {
                    #expect(lines.contains { $0.frames.last == "PprofTests.spinAlpha(_:)" }, "\(lines.prefix(20))")
                }
            }
        }

        @Test("in headless Chromium: the flame graph shows the hot functions, and search finds them with their share",
              .enabled(if: chromiumPath != nil, "chromium is not installed: run Scripts/install-deps.sh"),
              .timeLimit(.minutes(2)))
        func inBrowser() throws {
            let server = try PprofServer.start(.init(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let workload = MeasuredWorkload()
            workload.start()
            defer { workload.stop() }
            let profileDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(getpid())")
            defer { try? FileManager.default.removeItem(at: profileDirectory) }
            let url = "\(server.baseURL!)/debug/pprof/ui?profile=profile&seconds=2&search=spinAlpha"
            let outcome = try runProcess([chromiumPath!, "--headless", "--no-sandbox", "--disable-gpu", "--log-level=3",
                                          "--user-data-dir=\(profileDirectory.path)", "--window-size=1400,900",
                                          "--virtual-time-budget=30000", "--dump-dom", url], timeoutSeconds: 90)
            let dom = outcome.output
            #expect(dom.contains("id=\"status\">profile: cpu, total"), "the profile was not loaded:\n\(dom.suffix(3000))")
            // Frames of the hot functions, the matching ones highlighted.
            let frames: [(classes: String, name: String)] = dom.matches(of: /<div class="f([^"]*)"[^>]*>([^<]*)<\/div>/)
                .map { (String($0.1), String($0.2)) }
            #expect(frames.contains { $0.name == "PprofTests.spinBeta(_:)" }, "no spinBeta frame among \(frames.count) frames")
            #expect(frames.contains { $0.name == "PprofTests.spinAlpha(_:)" && $0.classes.contains("match") })
            #expect(!frames.contains { $0.classes.contains("match") && !$0.name.lowercased().contains("spinalpha") })
            // The search says what share of the total the matches hold.
            let share = try #require(dom.firstMatch(of: /id="share">matches: ([0-9.]+)% of total/))
            let percent = try #require(Double(share.1))
            #expect(percent > 5 && percent < 95, "spinAlpha's share: \(percent)%")
            // The top table lists them.
            #expect(dom.contains("<td class=\"n\">PprofTests.spinAlpha(_:)</td>"))
        }
    }
}
