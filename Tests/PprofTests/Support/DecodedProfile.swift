@testable import Pprof

/// A test-only protobuf reader for profile.proto, independent of the encoder,
/// so encoder tests check bytes on the wire rather than the builder's state.
struct DecodedProfile {
    struct ValueType { var type: Int64 = 0; var unit: Int64 = 0 }
    struct Label { var key: Int64 = 0; var str: Int64 = 0; var num: Int64 = 0; var numUnit: Int64 = 0 }
    struct Sample { var locationIDs: [UInt64] = []; var values: [Int64] = []; var labels: [Label] = [] }
    struct Mapping {
        var id: UInt64 = 0, start: UInt64 = 0, limit: UInt64 = 0, offset: UInt64 = 0
        var filename: Int64 = 0, buildID: Int64 = 0
        var hasFunctions = false, hasFilenames = false, hasLineNumbers = false, hasInlineFrames = false
    }
    struct Line { var functionID: UInt64 = 0; var line: Int64 = 0 }
    struct Location { var id: UInt64 = 0; var mappingID: UInt64 = 0; var address: UInt64 = 0; var lines: [Line] = [] }
    struct Function { var id: UInt64 = 0; var name: Int64 = 0; var systemName: Int64 = 0; var filename: Int64 = 0 }

    var sampleTypes: [ValueType] = []
    var samples: [Sample] = []
    var mappings: [Mapping] = []
    var locations: [Location] = []
    var functions: [Function] = []
    var strings: [String] = []
    var timeNanos: Int64 = 0
    var durationNanos: Int64 = 0
    var periodType = ValueType()
    var period: Int64 = 0
    var comments: [Int64] = []
    var defaultSampleType: Int64 = 0

    enum DecodeError: Error { case truncated, badWireType(Int) }

    init(gzipped: [UInt8]) throws { try self.init(bytes: Gzip.decompress(gzipped)) }

    init(bytes: [UInt8]) throws {
        var r = Reader(bytes: bytes[...])
        while !r.atEnd {
            let (field, wire) = try r.tag()
            switch (field, wire) {
            case (1, 2): sampleTypes.append(try Self.valueType(r.lengthDelimited()))
            case (2, 2): samples.append(try Self.sample(r.lengthDelimited()))
            case (3, 2): mappings.append(try Self.mapping(r.lengthDelimited()))
            case (4, 2): locations.append(try Self.location(r.lengthDelimited()))
            case (5, 2): functions.append(try Self.function(r.lengthDelimited()))
            case (6, 2): strings.append(String(decoding: try r.lengthDelimited(), as: UTF8.self))
            case (9, 0): timeNanos = Int64(bitPattern: try r.varint())
            case (10, 0): durationNanos = Int64(bitPattern: try r.varint())
            case (11, 2): periodType = try Self.valueType(r.lengthDelimited())
            case (12, 0): period = Int64(bitPattern: try r.varint())
            case (13, 0): comments.append(Int64(bitPattern: try r.varint()))
            case (13, 2): comments += try Self.packed(r.lengthDelimited()).map { Int64(bitPattern: $0) }
            case (14, 0): defaultSampleType = Int64(bitPattern: try r.varint())
            default: try r.skip(wire)
            }
        }
    }

    func string(_ i: Int64) -> String { strings[Int(i)] }

    /// Function names of a sample's stack, leaf first (inlined frames included).
    func functionNames(_ sample: Sample) -> [String] {
        sample.locationIDs.flatMap { id -> [String] in
            guard let loc = locations.first(where: { $0.id == id }) else { return ["<missing location>"] }
            return loc.lines.map { line in
                functions.first(where: { $0.id == line.functionID }).map { string($0.name) } ?? "<missing function>"
            }
        }
    }

    private struct Reader {
        var bytes: ArraySlice<UInt8>
        var atEnd: Bool { bytes.isEmpty }
        mutating func varint() throws -> UInt64 {
            var result: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard let b = bytes.popFirst() else { throw DecodeError.truncated }
                result |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 { return result }
                shift += 7
                if shift > 63 { throw DecodeError.truncated }
            }
        }
        mutating func tag() throws -> (Int, Int) {
            let t = try varint()
            return (Int(t >> 3), Int(t & 7))
        }
        mutating func lengthDelimited() throws -> ArraySlice<UInt8> {
            let n = Int(try varint())
            guard bytes.count >= n else { throw DecodeError.truncated }
            let out = bytes.prefix(n)
            bytes = bytes.dropFirst(n)
            return out
        }
        mutating func skip(_ wire: Int) throws {
            switch wire {
            case 0: _ = try varint()
            case 1: guard bytes.count >= 8 else { throw DecodeError.truncated }; bytes = bytes.dropFirst(8)
            case 2: _ = try lengthDelimited()
            case 5: guard bytes.count >= 4 else { throw DecodeError.truncated }; bytes = bytes.dropFirst(4)
            default: throw DecodeError.badWireType(wire)
            }
        }
    }

    private static func packed(_ b: ArraySlice<UInt8>) throws -> [UInt64] {
        var r = Reader(bytes: b)
        var out: [UInt64] = []
        while !r.atEnd { out.append(try r.varint()) }
        return out
    }

    private static func repeatedVarint(_ r: inout Reader, wire: Int, into out: inout [UInt64]) throws {
        if wire == 2 { out += try packed(r.lengthDelimited()) } else { out.append(try r.varint()) }
    }

    private static func valueType(_ b: ArraySlice<UInt8>) throws -> ValueType {
        var r = Reader(bytes: b), v = ValueType()
        while !r.atEnd {
            let (f, w) = try r.tag()
            switch f {
            case 1: v.type = Int64(bitPattern: try r.varint())
            case 2: v.unit = Int64(bitPattern: try r.varint())
            default: try r.skip(w)
            }
        }
        return v
    }

    private static func sample(_ b: ArraySlice<UInt8>) throws -> Sample {
        var r = Reader(bytes: b), s = Sample()
        while !r.atEnd {
            let (f, w) = try r.tag()
            switch f {
            case 1: try repeatedVarint(&r, wire: w, into: &s.locationIDs)
            case 2:
                var raw: [UInt64] = []
                try repeatedVarint(&r, wire: w, into: &raw)
                s.values += raw.map { Int64(bitPattern: $0) }
            case 3:
                var lr = Reader(bytes: try r.lengthDelimited()), l = Label()
                while !lr.atEnd {
                    let (lf, lw) = try lr.tag()
                    switch lf {
                    case 1: l.key = Int64(bitPattern: try lr.varint())
                    case 2: l.str = Int64(bitPattern: try lr.varint())
                    case 3: l.num = Int64(bitPattern: try lr.varint())
                    case 4: l.numUnit = Int64(bitPattern: try lr.varint())
                    default: try lr.skip(lw)
                    }
                }
                s.labels.append(l)
            default: try r.skip(w)
            }
        }
        return s
    }

    private static func mapping(_ b: ArraySlice<UInt8>) throws -> Mapping {
        var r = Reader(bytes: b), m = Mapping()
        while !r.atEnd {
            let (f, w) = try r.tag()
            switch f {
            case 1: m.id = try r.varint()
            case 2: m.start = try r.varint()
            case 3: m.limit = try r.varint()
            case 4: m.offset = try r.varint()
            case 5: m.filename = Int64(bitPattern: try r.varint())
            case 6: m.buildID = Int64(bitPattern: try r.varint())
            case 7: m.hasFunctions = try r.varint() != 0
            case 8: m.hasFilenames = try r.varint() != 0
            case 9: m.hasLineNumbers = try r.varint() != 0
            case 10: m.hasInlineFrames = try r.varint() != 0
            default: try r.skip(w)
            }
        }
        return m
    }

    private static func location(_ b: ArraySlice<UInt8>) throws -> Location {
        var r = Reader(bytes: b), l = Location()
        while !r.atEnd {
            let (f, w) = try r.tag()
            switch f {
            case 1: l.id = try r.varint()
            case 2: l.mappingID = try r.varint()
            case 3: l.address = try r.varint()
            case 4:
                var lr = Reader(bytes: try r.lengthDelimited()), line = Line()
                while !lr.atEnd {
                    let (lf, lw) = try lr.tag()
                    switch lf {
                    case 1: line.functionID = try lr.varint()
                    case 2: line.line = Int64(bitPattern: try lr.varint())
                    default: try lr.skip(lw)
                    }
                }
                l.lines.append(line)
            default: try r.skip(w)
            }
        }
        return l
    }

    private static func function(_ b: ArraySlice<UInt8>) throws -> Function {
        var r = Reader(bytes: b), fn = Function()
        while !r.atEnd {
            let (f, w) = try r.tag()
            switch f {
            case 1: fn.id = try r.varint()
            case 2: fn.name = Int64(bitPattern: try r.varint())
            case 3: fn.systemName = Int64(bitPattern: try r.varint())
            case 4: fn.filename = Int64(bitPattern: try r.varint())
            default: try r.skip(w)
            }
        }
        return fn
    }
}
