/// `/debug/pprof/ui`: a flame graph of any profile in the browser, no Go
/// toolchain needed. One self-contained page: its script and style are
/// inline, allowed by a per-response nonce in a strict
/// Content-Security-Policy that lets it talk to nothing but this server.
///
/// The page holds no profile data, so it is served without the bearer
/// token; it fetches `<profile>?format=json` (relative URLs, so it works
/// behind any prefix or tunnel) and sends the token it is given (typed in,
/// or in the URL fragment `#token=…`, which browsers never send) as
/// `Authorization: Bearer`. Query parameters `profile`, `seconds` and
/// `search` load a profile and search it on open.
enum FlameGraphPage {
    static let name = "ui"

    /// A profile the page offers: its label and the URL it fetches (relative
    /// to /debug/pprof/).
    struct Source {
        var label: String
        var path: String
    }

    static let defaultSources = [
        Source(label: "CPU", path: "profile"),
        Source(label: "heap (in use)", path: "heap"),
        Source(label: "allocations", path: "allocs"),
        Source(label: "goroutine (threads)", path: "goroutine"),
        Source(label: "wall clock (fgprof)", path: "../fgprof"),
    ]

    static func response(sources: [Source] = defaultSources) -> HTTPResponse {
        var bytes = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = generator.next() }
        let nonce = hexString(bytes)
        let policy = "default-src 'none'; script-src 'nonce-\(nonce)'; style-src 'nonce-\(nonce)'; "
            + "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        var response = HTTPResponse.html(render(sources: sources, nonce: nonce))
        response.headers += [("Content-Security-Policy", policy), ("Referrer-Policy", "no-referrer"),
                             ("Cache-Control", "no-store"), ("X-Frame-Options", "DENY")]
        return response
    }

    static func render(sources: [Source], nonce: String) -> String {
        let options = sources.map { "<option value=\"\(IndexPage.escape($0.path))\">\(IndexPage.escape($0.label))</option>" }
            .joined()
        return #"""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>swift-pprof flame graph</title>
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <style nonce="\#(nonce)">
            body{font:13px system-ui,sans-serif;margin:0;color:#222}
            header{display:flex;flex-wrap:wrap;gap:8px;align-items:center;padding:8px 12px;background:#f3f3f3;border-bottom:1px solid #ccc}
            header input[type=search]{width:18em}
            #status{color:#555}#share{font-weight:600}
            main{display:flex;gap:12px;padding:8px 12px;align-items:flex-start}
            #flame{position:relative;flex:1 1 auto;min-width:300px;overflow:hidden}
            .f{position:absolute;height:17px;line-height:17px;font-size:12px;overflow:hidden;white-space:nowrap;
               text-overflow:ellipsis;box-sizing:border-box;border:1px solid #fff;padding:0 3px;cursor:pointer;border-radius:2px}
            .f.anc{opacity:.55}.f.match{background:#d94bd9!important;color:#fff}.f.lib{background:#c9c9c9!important}
            #tip{position:fixed;pointer-events:none;background:#fffbe6;border:1px solid #bba;padding:4px 6px;max-width:60em;
                 white-space:pre-wrap;font-size:12px;display:none;z-index:2}
            table{border-collapse:collapse;font-size:12px;flex:0 0 auto;max-width:40em}
            td,th{padding:2px 6px;text-align:right;border-bottom:1px solid #eee;white-space:nowrap}
            td.n,th.n{text-align:left;white-space:normal;word-break:break-all}
            tr.row{cursor:pointer}tr.row:hover{background:#f0f0ff}
            </style></head><body>
            <header>
            <label>Profile <select id="profile">\#(options)</select></label>
            <label id="secondsBox">for <input id="seconds" type="number" min="1" max="300" value="10" size="4"> s</label>
            <button id="load">Load</button>
            <input id="search" type="search" placeholder="search (regexp)">
            <span id="share"></span>
            <form id="auth" hidden><input id="token" type="password" placeholder="bearer token" autocomplete="off">
            <button>Use token</button></form>
            <span id="status">Pick a profile and press Load.</span>
            </header>
            <main><div id="flame"></div><table id="top"></table></main>
            <div id="tip"></div>
            <script nonce="\#(nonce)">
            "use strict";
            const $ = id => document.getElementById(id), ROW = 18;
            let token = sessionStorage.getItem("pprof-token") || "", data = null, root = null, zoom = null, unit = "";
            const m = location.hash.match(/token=([^&]*)/);
            if (m) { token = decodeURIComponent(m[1]); sessionStorage.setItem("pprof-token", token);
              history.replaceState(null, "", location.pathname + location.search); }
            const say = text => { $("status").textContent = text; };

            function fmt(v) {
              if (unit === "nanoseconds") return v >= 1e9 ? (v / 1e9).toFixed(2) + " s" : (v / 1e6).toFixed(1) + " ms";
              if (unit === "bytes") return v >= 1048576 ? (v / 1048576).toFixed(1) + " MB" : (v / 1024).toFixed(1) + " kB";
              return String(v);
            }
            const pct = v => (root.total ? (100 * v / root.total).toFixed(1) : "0") + "%";

            async function load() {
              const path = $("profile").value;
              let url = path + "?format=json";
              const timed = path === "profile" || path === "../fgprof";
              if (timed) url += "&seconds=" + encodeURIComponent($("seconds").value || "10");
              say("Loading " + path + (timed ? " for " + $("seconds").value + " s" : "") + "…");
              let r;
              try { r = await fetch(url, {headers: token ? {Authorization: "Bearer " + token} : {}, cache: "no-store"}); }
              catch (e) { say("Request failed: " + e); return; }
              if (r.status === 401) { $("auth").hidden = false; say("This server needs its bearer token."); return; }
              if (!r.ok) { say("Error " + r.status + ": " + (await r.text())); return; }
              data = await r.json();
              unit = data.sampleType.unit;
              root = tree(data); zoom = root;
              say(path + ": " + data.sampleType.type + ", total " + fmt(root.total) + ", " + data.stacks.length + " stacks");
              draw(); topTable(); search();
            }

            function tree(d) {
              const r = {name: "all", total: 0, self: 0, kids: new Map(), place: "", best: -1, parent: null};
              for (const s of d.stacks) {
                if (s.value <= 0) continue;
                let n = r; n.total += s.value;
                for (const i of s.frames) {
                  const f = d.frames[i];
                  let c = n.kids.get(f.name);
                  if (!c) { c = {name: f.name, total: 0, self: 0, kids: new Map(), place: "", best: -1, parent: n}; n.kids.set(f.name, c); }
                  c.total += s.value;
                  if (f.file && s.value > c.best) { c.best = s.value; c.place = f.file + ":" + f.line; }
                  n = c;
                }
                n.self += s.value;
              }
              return r;
            }

            function hue(name) { let h = 0; for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0; return h; }

            function draw() {
              const box = $("flame"), width = box.clientWidth || 800, frag = document.createDocumentFragment();
              let depth = 0, deepest = 0;
              const add = (n, x, w, d, anc) => {
                const e = document.createElement("div"), h = hue(n.name);
                e.className = "f" + (anc ? " anc" : "") + (n.name.startsWith("[") ? " lib" : "");
                e.style.left = (100 * x) + "%"; e.style.width = (100 * w) + "%"; e.style.top = (d * ROW) + "px";
                e.style.background = "hsl(" + (10 + h % 45) + "," + (60 + h % 30) + "%," + (62 + h % 14) + "%)";
                e.textContent = n.name; e.node = n; frag.appendChild(e); deepest = Math.max(deepest, d);
              };
              const chain = []; for (let n = zoom.parent; n; n = n.parent) chain.unshift(n);
              for (const n of chain) add(n, 0, 1, depth++, true);
              const walk = (n, x, w, d) => {
                add(n, x, w, d, false);
                let cx = x;
                for (const c of [...n.kids.values()].sort((a, b) => a.name < b.name ? -1 : 1)) {
                  const cw = w * c.total / n.total;
                  if (cw * width >= 2) walk(c, cx, cw, d + 1);
                  cx += cw;
                }
              };
              if (zoom.total > 0) walk(zoom, 0, 1, depth);
              box.textContent = ""; box.appendChild(frag); box.style.height = ((deepest + 1) * ROW) + "px";
            }

            function topTable() {
              const self = new Map(), total = new Map();
              for (const s of data.stacks) {
                if (s.value <= 0 || !s.frames.length) continue;
                const leaf = data.frames[s.frames[s.frames.length - 1]].name;
                self.set(leaf, (self.get(leaf) || 0) + s.value);
                for (const name of new Set(s.frames.map(i => data.frames[i].name))) total.set(name, (total.get(name) || 0) + s.value);
              }
              const rows = [...total.keys()].sort((a, b) => (self.get(b) || 0) - (self.get(a) || 0) || total.get(b) - total.get(a)).slice(0, 40);
              const t = $("top"); t.textContent = "";
              const head = t.insertRow(); for (const h of ["self", "", "total", "", "function"]) { const c = document.createElement("th"); c.textContent = h; head.appendChild(c); }
              head.lastChild.className = "n";
              for (const name of rows) {
                const r = t.insertRow(), s = self.get(name) || 0, v = total.get(name);
                r.className = "row";
                for (const text of [fmt(s), pct(s), fmt(v), pct(v), name]) r.insertCell().textContent = text;
                r.lastChild.className = "n";
                r.addEventListener("click", () => { $("search").value = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); search(); });
              }
            }

            function search() {
              const text = $("search").value;
              let re = null;
              if (text) { try { re = new RegExp(text, "i"); } catch (e) { re = {test: s => s.toLowerCase().includes(text.toLowerCase())}; } }
              for (const e of $("flame").children) e.classList.toggle("match", !!re && re.test(e.node.name));
              if (!re || !data) { $("share").textContent = ""; return; }
              let hit = 0;
              for (const s of data.stacks) if (s.value > 0 && s.frames.some(i => re.test(data.frames[i].name))) hit += s.value;
              $("share").textContent = "matches: " + pct(hit) + " of total (" + fmt(hit) + ")";
            }

            $("flame").addEventListener("click", ev => { if (ev.target.node) { zoom = ev.target.node; draw(); search(); } });
            $("flame").addEventListener("mousemove", ev => {
              const n = ev.target.node, tip = $("tip");
              if (!n) { tip.style.display = "none"; return; }
              tip.textContent = n.name + "\ntotal " + fmt(n.total) + " (" + pct(n.total) + "), self " + fmt(n.self) + " (" + pct(n.self) + ")" + (n.place ? "\n" + n.place : "");
              tip.style.display = "block";
              tip.style.left = Math.min(ev.clientX + 12, innerWidth - tip.offsetWidth - 4) + "px"; tip.style.top = (ev.clientY + 14) + "px";
            });
            $("flame").addEventListener("mouseleave", () => { $("tip").style.display = "none"; });
            $("load").addEventListener("click", load);
            $("search").addEventListener("input", search);
            $("profile").addEventListener("change", () => { $("secondsBox").hidden = !["profile", "../fgprof"].includes($("profile").value); });
            $("auth").addEventListener("submit", ev => {
              ev.preventDefault(); token = $("token").value; sessionStorage.setItem("pprof-token", token); $("auth").hidden = true; load();
            });
            addEventListener("resize", () => { if (root) { draw(); search(); } });
            const q = new URLSearchParams(location.search);
            if (q.get("seconds")) $("seconds").value = q.get("seconds");
            if (q.get("search")) $("search").value = q.get("search");
            if (q.get("profile")) { $("profile").value = q.get("profile"); $("secondsBox").hidden = !["profile", "../fgprof"].includes($("profile").value); load(); }
            </script></body></html>
            """#
    }
}
