/// The HTML index at `/debug/pprof/`, in the shape of current Go's template.
enum IndexPage {
    struct Entry {
        var name: String
        var count: Int
        var description: String
    }

    static func render(_ entries: [Entry]) -> String {
        let sorted = entries.sorted { $0.name < $1.name }
        var html = """
            <html>
            <head>
            <title>/debug/pprof/</title>
            <style>
            .profile-name{
            \tdisplay:inline-block;
            \twidth:6rem;
            }
            </style>
            </head>
            <body>
            /debug/pprof/
            <br>
            <p>Set debug=1 as a query parameter to export in legacy text format</p>
            <br>
            Types of profiles available:
            <table>
            <thead><td>Count</td><td>Profile</td></thead>

            """
        for e in sorted {
            let name = escape(e.name)
            // The flame graph page is a page, not a profile: no debug=1.
            let link = e.name == FlameGraphPage.name ? name : "\(name)?debug=1"
            html += "<tr><td>\(e.count)</td><td><a href='\(link)'>\(name)</a></td></tr>\n"
        }
        html += """
            </table>
            <a href="goroutine?debug=2">full goroutine stack dump</a>
            <br>
            <a href="../fgprof?seconds=10">wall-clock profile of every thread, on a CPU or waiting (/debug/fgprof, 10 s; format=folded for collapsed stacks)</a>
            <br>
            <p>
            Profile Descriptions:
            <ul>

            """
        for e in sorted {
            html += "<li><div class=profile-name>\(escape(e.name)): </div> \(escape(e.description))</li>\n"
        }
        html += """
            </ul>
            </p>
            </body>
            </html>
            """
        return html
    }

    /// html.EscapeString's five characters.
    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "&": out += "&amp;"
            case "'": out += "&#39;"
            case "\"": out += "&#34;"
            default: out.append(c)
            }
        }
        return out
    }
}
