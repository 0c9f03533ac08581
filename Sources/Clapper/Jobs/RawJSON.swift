import Foundation

/// A byte-level JSON reader that never converts numbers: it validates a JSON text (RFC 8259) and
/// finds the byte range of a value by a path of object keys. fal's outputs can carry integers no
/// `Int64` or `Double` holds (`"seed": 17454220438242315174`); reading them through `Codable` or
/// `JSONSerialization` would change them, so raw outputs are located and copied byte for byte.
public enum RawJSON {
    /// Nesting deeper than this is rejected (keeps the recursion bounded).
    public static let maxDepth = 256

    /// True when `bytes` is exactly one JSON value, optionally surrounded by whitespace.
    public static func isValid(_ bytes: [UInt8]) -> Bool {
        guard String(validating: bytes, as: UTF8.self) != nil else { return false }
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        guard scanner.skipValue(depth: 0) else { return false }
        scanner.skipWhitespace()
        return scanner.index == bytes.count
    }

    /// True when `bytes` is one JSON object (the rest as `isValid`).
    public static func isObject(_ bytes: [UInt8]) -> Bool {
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        return scanner.peek == UInt8(ascii: "{") && isValid(bytes)
    }

    /// The byte range of the value at `path` (object keys from the top), or nil when the text is not
    /// valid JSON or the path does not lead anywhere. With duplicate keys the first one wins.
    public static func range(at path: [String], in bytes: [UInt8]) -> Range<Int>? {
        guard isValid(bytes) else { return nil }
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        for key in path {
            guard scanner.seek(key: Array(key.utf8)) else { return nil }
        }
        let start = scanner.index
        guard scanner.skipValue(depth: 0) else { return nil }
        return start..<scanner.index
    }

    /// The raw bytes of the value at `path` (see `range(at:in:)`).
    public static func value(at path: [String], in bytes: [UInt8]) -> [UInt8]? {
        range(at: path, in: bytes).map { Array(bytes[$0]) }
    }

    /// The string at `path`, unescaped; nil when absent or not a string.
    public static func string(at path: [String], in bytes: [UInt8]) -> String? {
        guard let raw = value(at: path, in: bytes), raw.first == UInt8(ascii: "\"") else { return nil }
        return try? JSONDecoder().decode(String.self, from: Data(raw))
    }

    /// The members of the object `bytes[range]` in order, each key unescaped with the byte range
    /// of its value; nil when that is not one valid JSON object.
    public static func members(in bytes: [UInt8], range: Range<Int>? = nil) -> [(key: String, range: Range<Int>)]? {
        let range = range ?? bytes.indices
        let slice = Array(bytes[range])
        guard isValid(slice) else { return nil }
        var scanner = Scanner(bytes: slice)
        scanner.skipWhitespace()
        guard scanner.peek == UInt8(ascii: "{") else { return nil }
        scanner.index += 1
        var result: [(key: String, range: Range<Int>)] = []
        while true {
            scanner.skipWhitespace()
            if scanner.peek == UInt8(ascii: "}") { return result }
            if scanner.peek == UInt8(ascii: ",") { scanner.index += 1; continue }
            guard let keyRange = scanner.skipString(),
                  let key = try? JSONDecoder().decode(String.self, from: Data(slice[(keyRange.lowerBound - 1)...keyRange.upperBound]))
            else { return nil }
            scanner.skipWhitespace()
            scanner.index += 1  // ':' (the text is valid)
            scanner.skipWhitespace()
            let start = scanner.index
            guard scanner.skipValue(depth: 1) else { return nil }
            result.append((key, (start + range.lowerBound)..<(scanner.index + range.lowerBound)))
        }
    }

    /// What kind of JSON value starts at `bytes[index]` (the text is assumed valid there).
    public enum ValueType: String, Sendable {
        case object, array, string, number, bool, null
    }

    public static func type(at index: Int, in bytes: [UInt8]) -> ValueType? {
        guard index < bytes.count else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        default: return .number
        }
    }

    /// A dotted path as the model catalog writes it (`video.url`) split into keys.
    public static func path(_ dotted: String) -> [String] {
        dotted.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while let b = peek, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { index += 1 }
        }

        mutating func expect(_ literal: StaticString) -> Bool {
            let utf8 = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
            guard bytes.count - index >= utf8.count else { return false }
            for (offset, b) in utf8.enumerated() where bytes[index + offset] != b { return false }
            index += utf8.count
            return true
        }

        mutating func skipValue(depth: Int) -> Bool {
            guard depth < RawJSON.maxDepth, let b = peek else { return false }
            switch b {
            case UInt8(ascii: "{"): return skipObject(depth: depth)
            case UInt8(ascii: "["): return skipArray(depth: depth)
            case UInt8(ascii: "\""): return skipString() != nil
            case UInt8(ascii: "t"): return expect("true")
            case UInt8(ascii: "f"): return expect("false")
            case UInt8(ascii: "n"): return expect("null")
            default: return skipNumber()
            }
        }

        mutating func skipObject(depth: Int) -> Bool {
            index += 1
            skipWhitespace()
            if peek == UInt8(ascii: "}") { index += 1; return true }
            while true {
                skipWhitespace()
                guard peek == UInt8(ascii: "\""), skipString() != nil else { return false }
                skipWhitespace()
                guard peek == UInt8(ascii: ":") else { return false }
                index += 1
                skipWhitespace()
                guard skipValue(depth: depth + 1) else { return false }
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"): index += 1; return true
                default: return false
                }
            }
        }

        mutating func skipArray(depth: Int) -> Bool {
            index += 1
            skipWhitespace()
            if peek == UInt8(ascii: "]") { index += 1; return true }
            while true {
                skipWhitespace()
                guard skipValue(depth: depth + 1) else { return false }
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"): index += 1; return true
                default: return false
                }
            }
        }

        /// Skips a string; returns the range of its raw contents (between the quotes).
        mutating func skipString() -> Range<Int>? {
            index += 1
            let start = index
            while let b = peek {
                switch b {
                case UInt8(ascii: "\""):
                    index += 1
                    return start..<(index - 1)
                case UInt8(ascii: "\\"):
                    index += 1
                    guard let e = peek else { return nil }
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                         UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        index += 1
                    case UInt8(ascii: "u"):
                        index += 1
                        for _ in 0..<4 {
                            guard let h = peek, h.isHexDigit else { return nil }
                            index += 1
                        }
                    default: return nil
                    }
                case 0x00..<0x20:
                    return nil
                default:
                    index += 1
                }
            }
            return nil
        }

        mutating func skipNumber() -> Bool {
            if peek == UInt8(ascii: "-") { index += 1 }
            guard let first = peek, first.isDigit else { return false }
            index += 1
            if first != UInt8(ascii: "0") { skipDigits() }
            if peek == UInt8(ascii: ".") {
                index += 1
                guard let d = peek, d.isDigit else { return false }
                skipDigits()
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                index += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
                guard let d = peek, d.isDigit else { return false }
                skipDigits()
            }
            return true
        }

        mutating func skipDigits() {
            while let d = peek, d.isDigit { index += 1 }
        }

        /// At an object, moves to the value of `key` (raw key bytes compared after unescaping
        /// only when the key has no escapes; escaped keys are compared via decoding).
        mutating func seek(key: [UInt8]) -> Bool {
            guard peek == UInt8(ascii: "{") else { return false }
            index += 1
            skipWhitespace()
            if peek == UInt8(ascii: "}") { return false }
            while true {
                skipWhitespace()
                guard let keyRange = skipString() else { return false }
                skipWhitespace()
                index += 1 // ':'
                skipWhitespace()
                if keyMatches(keyRange, key) { return true }
                guard skipValue(depth: 1) else { return false }
                skipWhitespace()
                guard peek == UInt8(ascii: ",") else { return false }
                index += 1
            }
        }

        func keyMatches(_ range: Range<Int>, _ key: [UInt8]) -> Bool {
            let raw = bytes[range]
            if !raw.contains(UInt8(ascii: "\\")) { return raw.elementsEqual(key) }
            let quoted = [UInt8(ascii: "\"")] + raw + [UInt8(ascii: "\"")]
            guard let decoded = try? JSONDecoder().decode(String.self, from: Data(quoted)) else { return false }
            return Array(decoded.utf8) == key
        }
    }
}

extension UInt8 {
    fileprivate var isDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    fileprivate var isHexDigit: Bool {
        isDigit || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "f")) || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "F"))
    }
}
