#!/usr/bin/env python3
# Measures /debug/pprof/symbol: 1 MiB POSTs of real code addresses to pprof-demo,
# CPU and RSS of the process per round (Docs/Hardening.md, issue 11 item 6).
#   swift build && python3 Scripts/probe-symbol-memory.py .build/debug/pprof-demo 16602 5
import sys, subprocess, time, random, http.client, re, os
exe, port = sys.argv[1], int(sys.argv[2])
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
p = subprocess.Popen([exe, "--pprof-address", f"127.0.0.1:{port}", "--http-address", "off", "--load-threads", "0"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1.5)
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
def cpu():
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
ranges = []
real = os.path.realpath(exe)
for l in open(f"/proc/{p.pid}/maps"):
    parts = l.split()
    if len(parts) >= 6 and "x" in parts[1]:
        a, b = (int(x, 16) for x in parts[0].split("-"))
        ranges.append((a, b))
rnd = random.Random(1)
NL = b"\n"
try:
    print("rss_start_MiB", rss())
    for r in range(rounds):
        addrs = []
        size = 0
        while size < (1 << 20) - 24:
            a, b = rnd.choice(ranges)
            s = hex(rnd.randrange(a, b))
            addrs.append(s); size += len(s) + 1
        body = "+".join(addrs).encode()[: (1 << 20)]
        c0, t0 = cpu(), time.time()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/debug/pprof/symbol", body=body)
        resp = conn.getresponse(); data = resp.read()
        print(f"round {r}: status {resp.status} addrs {len(addrs)} lines {data.count(NL)} wall {time.time()-t0:.2f}s cpu {cpu()-c0:.2f}s rss {rss()} MiB")
finally:
    p.kill()
