#!/usr/bin/env python3
# Runs pprof-demo under an address-space limit (ulimit -v) and hammers every endpoint with 16
# clients; prints the answers by endpoint and status, the slowest answer, whether the demo lived,
# and a heap profile's status once the load stopped (Docs/Hardening.md, issue 11 item 1).
#   swift build && python3 Scripts/probe-address-space.py .build/debug/pprof-demo 16603 650000 20
import collections, resource, socket, subprocess, sys, threading, time
exe, port, limit_kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 20
clients = int(sys.argv[5]) if len(sys.argv) > 5 else 16
limit = limit_kib * 1024
p = subprocess.Popen([exe, "--pprof-address", f"127.0.0.1:{port}", "--http-address", "off", "--load-threads", "2"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                     preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
time.sleep(3)
vm = [l.split()[1] for l in open(f"/proc/{p.pid}/status") if l.startswith("VmSize")]
print(f"limit {limit_kib} KiB, VmSize at start {vm[0] if vm else '?'} KiB")
targets = ["/debug/pprof/profile?seconds=1", "/debug/pprof/heap", "/debug/pprof/allocs",
           "/debug/pprof/goroutine?debug=0", "/debug/pprof/goroutine?debug=1", "/debug/pprof/goroutine?debug=2",
           "/debug/pprof/threadcreate", "/debug/pprof/symbol", "/debug/fgprof?seconds=1", "/debug/pprof/ui",
           "/debug/pprof/cmdline", "/debug/pprof/heap?debug=1"]

def request(path):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    fields = head.split(b"\r\n")[0].split(b" ")
    status = fields[1].decode() if len(fields) > 1 else "malformed"
    length = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
    if not length or int(length[0].split(b":")[1]) != len(body):
        status += " (body length wrong)"
    return status

counts, slowest, lock = collections.Counter(), [0.0], threading.Lock()
end = time.time() + seconds
def client(i):
    n = i
    while time.time() < end:
        path = targets[n % len(targets)]
        n += 1
        start = time.time()
        try:
            status = request(path)
        except Exception as e:
            status = type(e).__name__
        with lock:
            counts[(path.split("?")[0].rsplit("/", 1)[1], status)] += 1
            slowest[0] = max(slowest[0], time.time() - start)
threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
[t.start() for t in threads]
[t.join() for t in threads]
for (name, status), n in sorted(counts.items()):
    print(f"{n:7} {name} {status}")
print(f"slowest answer {slowest[0]:.1f} s")
alive = p.poll() is None
print("demo alive" if alive else f"demo DIED (exit {p.returncode})")
if alive:
    time.sleep(6)  # idle workers end after 5 s
    try:
        print("after the load: heap", request("/debug/pprof/heap"), "cmdline", request("/debug/pprof/cmdline"))
    except Exception as e:
        print("after the load:", type(e).__name__)
    p.terminate()
    p.wait()
else:
    print(p.stderr.read().decode(errors="replace")[:600])
