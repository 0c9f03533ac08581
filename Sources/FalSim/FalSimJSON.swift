/// A JSON value as fal's Python services see it.
///
/// Numbers keep their literal text, so integers larger than `Int64` (fal's seeds) survive a
/// parse and re-serialise unchanged. `pythonSerialized()` writes the bytes Python's
/// `json.dumps(obj, sort_keys=True)` writes for the same value.
public indirect enum FalSimJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    /// A number as written in JSON (`17454220438242315174`, `1.5`, `2e-7`).
    case number(String)
    case string(String)
    case array([FalSimJSON])
    case object([String: FalSimJSON])

    /// An integer number.
    public static func int(_ value: some BinaryInteger) -> FalSimJSON { .number(String(value)) }

    /// A floating point number.
    public static func double(_ value: Double) -> FalSimJSON {
        value.isFinite ? .number(FalSimPythonNumber.repr(value)) : .number(value > 0 ? "1e999" : "-1e999")
    }

    public subscript(key: String) -> FalSimJSON? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The number as a `Double`, if this is a number.
    public var doubleValue: Double? {
        if case .number(let literal) = self { return Double(literal) }
        return nil
    }

    /// Whether this number is written as an integer (Python `int`).
    public var isInteger: Bool {
        if case .number(let literal) = self { return !literal.contains(where: { ".eE".contains($0) }) }
        return false
    }

    /// Parses JSON text (RFC 8259; duplicate keys keep the last value, as Python does).
    public static func parse(_ bytes: some Collection<UInt8>) throws(FalSimJSONError) -> FalSimJSON {
        var parser = FalSimJSONParser(bytes: Array(bytes))
        return try parser.parseDocument()
    }

    /// Parses JSON text given as a string.
    public static func parse(_ text: String) throws(FalSimJSONError) -> FalSimJSON {
        try parse(Array(text.utf8))
    }

    /// The bytes of Python's `json.dumps(value, sort_keys=True)`: sorted keys, `", "` and `": "`
    /// separators, non-ASCII escaped as `\uXXXX` (surrogate pairs above U+FFFF).
    public func pythonSerialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out)
        return out
    }

    /// `pythonSerialized()` as a string (pure ASCII).
    public var pythonString: String { String(decoding: pythonSerialized(), as: UTF8.self) }

    private func write(into out: inout [UInt8]) {
        switch self {
        case .null:
            out.append(contentsOf: "null".utf8)
        case .bool(let value):
            out.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let literal):
            out.append(contentsOf: FalSimPythonNumber.normalise(literal).utf8)
        case .string(let value):
            Self.writeString(value, into: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { out.append(contentsOf: ", ".utf8) }
                element.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            // Python compares str by code point.
            let sorted = members.sorted { $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars) { $0.value < $1.value } }
            for (index, member) in sorted.enumerated() {
                if index > 0 { out.append(contentsOf: ", ".utf8) }
                Self.writeString(member.key, into: &out)
                out.append(contentsOf: ": ".utf8)
                member.value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    private static func writeEscape(_ unit: UInt32, into out: inout [UInt8]) {
        out.append(contentsOf: "\\u".utf8)
        for shift in stride(from: 12, through: 0, by: -4) {
            out.append(hexDigits[Int((unit >> UInt32(shift)) & 0xF)])
        }
    }

    private static func writeString(_ value: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for scalar in value.unicodeScalars {
            switch scalar.value {
            case 0x22: out.append(contentsOf: "\\\"".utf8)
            case 0x5C: out.append(contentsOf: "\\\\".utf8)
            case 0x0A: out.append(contentsOf: "\\n".utf8)
            case 0x0D: out.append(contentsOf: "\\r".utf8)
            case 0x09: out.append(contentsOf: "\\t".utf8)
            case 0x08: out.append(contentsOf: "\\b".utf8)
            case 0x0C: out.append(contentsOf: "\\f".utf8)
            case 0x20...0x7E: out.append(UInt8(scalar.value))
            case 0x10000...:
                let value = scalar.value - 0x10000
                writeEscape(0xD800 | (value >> 10), into: &out)
                writeEscape(0xDC00 | (value & 0x3FF), into: &out)
            default:
                writeEscape(scalar.value, into: &out)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
