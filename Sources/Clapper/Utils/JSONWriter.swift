import Fal
import Foundation

/// Writes JSON text by hand, for bodies that splice in raw JSON bytes (fal's outputs, the
/// client's metadata) which must not be decoded and re-encoded.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []
    /// One flag per open object: has it got a member yet (so the next key needs a comma)?
    private var hasMember: [Bool] = []

    init() {}

    /// Opens an object: at the top, or as the value after `key`.
    mutating func beginObject() {
        bytes.append(UInt8(ascii: "{"))
        hasMember.append(false)
    }

    mutating func endObject() {
        hasMember.removeLast()
        bytes.append(UInt8(ascii: "}"))
    }

    /// Writes `"name":`; exactly one value must follow.
    mutating func key(_ name: String) {
        if hasMember[hasMember.count - 1] { bytes.append(UInt8(ascii: ",")) }
        hasMember[hasMember.count - 1] = true
        Self.appendString(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func string(_ value: String?) {
        if let value { Self.appendString(value, to: &bytes) } else { null() }
    }

    mutating func int(_ value: Int?) {
        if let value { bytes.append(contentsOf: String(value).utf8) } else { null() }
    }

    mutating func int64(_ value: Int64) {
        bytes.append(contentsOf: String(value).utf8)
    }

    /// A number already in JSON's syntax (made by the caller from a finite `Double`).
    mutating func number(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    mutating func bool(_ value: Bool) {
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    mutating func null() {
        bytes.append(contentsOf: Self.null)
    }

    /// Splices `raw` in byte for byte when it is one valid JSON value; writes `null` otherwise,
    /// so a broken input can never break the document.
    mutating func raw(_ raw: [UInt8]?) {
        if let raw, String(validating: raw, as: UTF8.self) != nil, (try? RawJSON.validate(raw[...])) != nil { bytes.append(contentsOf: raw) } else { null() }
    }

    /// Writes `items` as an array, each element written by `element` (exactly one value each).
    mutating func array<Element>(_ items: [Element], _ element: (inout JSONWriter, Element) -> Void) {
        bytes.append(UInt8(ascii: "["))
        for (index, item) in items.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            element(&self, item)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    mutating func field(_ name: String, _ value: String?) { key(name); string(value) }
    mutating func field(_ name: String, _ value: Int?) { key(name); int(value) }
    mutating func field(_ name: String, _ value: Bool) { key(name); bool(value) }
    mutating func field(_ name: String, _ value: Bool?) {
        key(name)
        if let value { bool(value) } else { null() }
    }
    mutating func rawField(_ name: String, _ value: [UInt8]?) { key(name); raw(value) }

    private static let null = Array("null".utf8)

    /// A JSON string literal: `"` and `\` escaped, control characters as `\n`, `\r`, `\t`, `\b`,
    /// `\f` or `\u00XX`, and U+2028 / U+2029 as `\u2028` / `\u2029` (valid raw in JSON but line
    /// breaks to JavaScript and some line-oriented readers).
    static func appendString(_ value: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { utf8 in
            // Runs of bytes that need no escape are copied whole.
            var start = 0
            var index = 0
            while index < utf8.count {
                let byte = utf8[index]
                var width = 1
                let needsEscape: Bool
                if byte == 0x22 || byte == 0x5C || byte < 0x20 || byte == 0x7F {
                    needsEscape = true
                } else if byte == 0xE2, index + 2 < utf8.count, utf8[index + 1] == 0x80, utf8[index + 2] == 0xA8 || utf8[index + 2] == 0xA9 {
                    needsEscape = true  // U+2028, U+2029
                    width = 3
                } else {
                    needsEscape = false
                }
                guard needsEscape else {
                    index += 1
                    continue
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                switch byte {
                case 0x22: out.append(contentsOf: [0x5C, 0x22])
                case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
                case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
                case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
                case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
                case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
                case 0xE2: out.append(contentsOf: utf8[index + 2] == 0xA8 ? Self.lineSeparator : Self.paragraphSeparator)
                default: appendUnicodeEscape(byte, to: &out)
                }
                index += width
                start = index
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let lineSeparator = Array(#"\u2028"#.utf8)
    private static let paragraphSeparator = Array(#"\u2029"#.utf8)

    /// `\u00XX` for a control character (lowercase hex).
    private static let hex = Array("0123456789abcdef".utf8)

    private static func appendUnicodeEscape(_ byte: UInt8, to out: inout [UInt8]) {
        out.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]])
    }

    static func quoted(_ value: String) -> [UInt8] {
        var out: [UInt8] = []
        appendString(value, to: &out)
        return out
    }
}

/// ISO 8601 in UTC with milliseconds, e.g. `2026-01-02T03:04:05.678Z`.
enum Timestamp {
    static func iso8601(_ date: Date) -> String {
        // Whole milliseconds, rounded down, computed by hand so no formatter or locale is involved.
        // Clamped to years 0...9999, so a date read from a damaged record cannot overflow below.
        let millis = min(max(date.milliseconds(.down), -62_167_219_200_000), 253_402_300_799_999)
        let (days, msOfDay) = floorDivMod(millis, 86_400_000)
        let (y, m, d) = civil(fromDays: days)
        let h = msOfDay / 3_600_000, mi = msOfDay / 60_000 % 60, s = msOfDay / 1000 % 60, ms = msOfDay % 1000
        return pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2) + "T" + pad(h, 2) + ":" + pad(mi, 2) + ":" + pad(s, 2) + "." + pad(ms, 3) + "Z"
    }

    private static func floorDivMod(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        let q = a / b, r = a % b
        return r < 0 ? (q - 1, r + b) : (q, r)
    }

    /// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
    private static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}
