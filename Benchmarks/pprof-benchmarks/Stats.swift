import Glibc

/// Order statistics of a set of measurements.
struct Distribution {
    let sorted: [Double]

    init(_ values: [Double]) { sorted = values.sorted() }

    var count: Int { sorted.count }
    var min: Double { sorted.first ?? .nan }
    var max: Double { sorted.last ?? .nan }
    var median: Double { quantile(0.5) }

    /// Linear interpolation between closest ranks.
    func quantile(_ q: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let position = q * Double(sorted.count - 1)
        let low = Int(position.rounded(.down))
        let high = Swift.min(low + 1, sorted.count - 1)
        let fraction = position - Double(low)
        return sorted[low] + (sorted[high] - sorted[low]) * fraction
    }
}

/// Fixed-point formatting without Foundation.
func format(_ value: Double, _ decimals: Int) -> String {
    if value.isNaN { return "n/a" }
    if value.isInfinite { return value > 0 ? "inf" : "-inf" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let negative = value < 0
    let scaled = (abs(value) * scale).rounded()
    let whole = Int64(scaled / scale)
    var text = "\(negative && scaled != 0 ? "-" : "")\(whole)"
    if decimals > 0 {
        let fraction = Int64(scaled - Double(whole) * scale)
        var digits = "\(fraction)"
        while digits.count < decimals { digits = "0" + digits }
        text += "." + digits
    }
    return text
}

/// Machine-readable results, one `key value value ...` line each, read back
/// by the `report` subcommand to print the combined table.
final class Summary {
    private(set) var lines: [String] = []
    private let path: String?

    init(path: String?) { self.path = path }

    func record(_ key: String, _ values: [Double]) {
        lines.append(([key] + values.map { format($0, 6) }).joined(separator: " "))
    }

    func write() {
        guard let path else { return }
        let text = lines.joined(separator: "\n") + "\n"
        guard let file = fopen(path, "w") else { fatal("cannot write \(path)") }
        _ = text.withCString { fputs($0, file) }
        fclose(file)
    }

    /// Reads `key -> values` from summary files.
    static func read(paths: [String]) -> [String: [Double]] {
        var result: [String: [Double]] = [:]
        for path in paths {
            guard let bytes = readFile(path) else { fatal("cannot read \(path)") }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                let fields = line.split(separator: " ")
                guard let key = fields.first else { continue }
                result[String(key)] = fields.dropFirst().map { Double(String($0)) ?? .nan }
            }
        }
        return result
    }
}

func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out.append(contentsOf: chunk[0..<n])
    }
    return out
}
