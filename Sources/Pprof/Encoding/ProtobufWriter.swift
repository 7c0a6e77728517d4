/// A minimal protocol-buffers wire-format writer: just what profile.proto needs
/// (varints, packed varints, length-delimited strings and messages).
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    init() {}

    mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func writeTag(_ field: Int, wireType: UInt64) {
        writeVarint(UInt64(field) << 3 | wireType)
    }

    /// A varint field; zero is omitted unless `always` (proto3 default rules).
    mutating func int64(_ field: Int, _ value: Int64, always: Bool = false) {
        guard value != 0 || always else { return }
        writeTag(field, wireType: 0)
        writeVarint(UInt64(bitPattern: value))
    }

    mutating func uint64(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        writeTag(field, wireType: 0)
        writeVarint(value)
    }

    mutating func bool(_ field: Int, _ value: Bool) {
        guard value else { return }
        writeTag(field, wireType: 0)
        writeVarint(1)
    }

    /// A repeated varint field in packed form (readers accept packed and unpacked).
    mutating func packed(_ field: Int, _ values: [UInt64]) {
        guard !values.isEmpty else { return }
        var inner = ProtobufWriter()
        for v in values { inner.writeVarint(v) }
        bytes(field, inner.bytes)
    }

    mutating func bytes(_ field: Int, _ value: [UInt8]) {
        writeTag(field, wireType: 2)
        writeVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    mutating func string(_ field: Int, _ value: String) {
        bytes(field, Array(value.utf8))
    }

    /// An embedded message, built by `body` into its own buffer.
    mutating func message(_ field: Int, _ body: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        body(&inner)
        bytes(field, inner.bytes)
    }
}
