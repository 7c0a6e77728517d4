// Field numbers of perftools.profiles (profile.proto), by message, named as
// the .proto names them, so the encoder reads as the format it writes.
// Only the fields this encoder writes; the rest are listed for reference.

/// `Profile`.
enum ProfileField {
    static let sampleType = 1
    static let sample = 2
    static let mapping = 3
    static let location = 4
    static let function = 5
    static let stringTable = 6
    // drop_frames = 7, keep_frames = 8: not written.
    static let timeNanos = 9
    static let durationNanos = 10
    static let periodType = 11
    static let period = 12
    static let comment = 13
    static let defaultSampleType = 14
    // doc_url = 15: not written.
}

/// `ValueType`.
enum ValueTypeField {
    static let type = 1
    static let unit = 2
}

/// `Sample`.
enum SampleField {
    static let locationID = 1
    static let value = 2
    static let label = 3
}

/// `Label`.
enum LabelField {
    static let key = 1
    static let str = 2
    static let num = 3
    static let numUnit = 4
}

/// `Mapping`.
enum MappingField {
    static let id = 1
    static let memoryStart = 2
    static let memoryLimit = 3
    static let fileOffset = 4
    static let filename = 5
    static let buildID = 6
    static let hasFunctions = 7
    static let hasFilenames = 8
    static let hasLineNumbers = 9
    // has_inline_frames = 10: not written.
}

/// `Location`.
enum LocationField {
    static let id = 1
    static let mappingID = 2
    static let address = 3
    static let line = 4
    // is_folded = 5: not written.
}

/// `Line`.
enum LineField {
    static let functionID = 1
    static let line = 2
    // column = 3: not written.
}

/// `Function`.
enum FunctionField {
    static let id = 1
    static let name = 2
    static let systemName = 3
    static let filename = 4
    // start_line = 5: not written.
}
