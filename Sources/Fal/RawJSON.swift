/// A small scanner over raw JSON bytes that never decodes numbers.
///
/// fal's outputs carry integers above `Int64.max` (a real one: `"seed": 17454220438242315174`);
/// a round trip through `JSONSerialization` or `Codable` would change them. `RawJSON` finds
/// object members and returns each value as the exact byte slice of the input, and extracts
/// strings at dotted paths (`video.url`) without touching anything else.
public enum RawJSON {
    /// One member of an object: its decoded key and the exact bytes of its value.
    public struct Member: Sendable, Hashable {
        public let key: String
        public let value: ArraySlice<UInt8>
    }

    /// The members of the top-level object in `bytes`, in document order (duplicates kept).
    /// Throws when `bytes` is not exactly one JSON object, optionally surrounded by whitespace.
    public static func members(of bytes: ArraySlice<UInt8>) throws(RawJSONError) -> [Member] {
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        let result = try scanner.scanObjectMembers()
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw RawJSONError("trailing bytes after the value", offset: scanner.offset) }
        return result
    }

    public static func members(of bytes: [UInt8]) throws(RawJSONError) -> [Member] {
        try members(of: bytes[...])
    }

    /// The elements of the top-level array in `bytes`, each as the exact bytes of its value.
    /// Throws when `bytes` is not exactly one JSON array, optionally surrounded by whitespace.
    public static func elements(of bytes: ArraySlice<UInt8>) throws(RawJSONError) -> [ArraySlice<UInt8>] {
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        let result = try scanner.scanArrayElements()
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw RawJSONError("trailing bytes after the value", offset: scanner.offset) }
        return result
    }

    /// The raw bytes of the first top-level member named `key`, or nil when absent.
    public static func value(forKey key: String, in bytes: [UInt8]) throws(RawJSONError) -> ArraySlice<UInt8>? {
        try members(of: bytes).first { $0.key == key }?.value
    }

    /// Whether `bytes` is exactly one well-formed JSON object.
    public static func isObject(_ bytes: [UInt8]) -> Bool {
        (try? members(of: bytes)) != nil
    }

    /// Validates `bytes` as exactly one JSON value of any kind.
    public static func validate(_ bytes: ArraySlice<UInt8>) throws(RawJSONError) {
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        try scanner.skipValue()
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw RawJSONError("trailing bytes after the value", offset: scanner.offset) }
    }

    /// The raw bytes of the value at a dotted path of object keys (`video.url`), or nil when a
    /// step is missing or not an object. Malformed JSON also gives nil.
    public static func value(atPath path: String, in bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        var current = bytes
        for component in path.split(separator: ".", omittingEmptySubsequences: false) {
            guard let members = try? members(of: current),
                  let member = members.first(where: { $0.key == component }) else { return nil }
            current = member.value
        }
        return current
    }

    public static func value(atPath path: String, in bytes: [UInt8]) -> ArraySlice<UInt8>? {
        value(atPath: path, in: bytes[...])
    }

    /// The string at a dotted path (`video.url`), or nil when absent or not a string.
    public static func string(atPath path: String, in bytes: [UInt8]) -> String? {
        guard let raw = value(atPath: path, in: bytes[...]) else { return nil }
        return string(raw)
    }

    public static func string(atPath path: String, in bytes: ArraySlice<UInt8>) -> String? {
        guard let raw = value(atPath: path, in: bytes) else { return nil }
        return string(raw)
    }

    /// Decodes raw bytes holding one JSON string literal (escapes resolved); nil otherwise.
    public static func string(_ raw: ArraySlice<UInt8>) -> String? {
        var scanner = Scanner(bytes: raw)
        scanner.skipWhitespace()
        guard let value = try? scanner.scanString() else { return nil }
        scanner.skipWhitespace()
        return scanner.isAtEnd ? value : nil
    }

    /// Whether raw bytes hold the literal `null`.
    public static func isNull(_ raw: ArraySlice<UInt8>) -> Bool {
        raw.elementsEqual("null".utf8)
    }
}

extension RawJSON {
    struct Scanner {
        let bytes: ArraySlice<UInt8>
        var index: Int
        /// Nesting limit so hostile input cannot exhaust the stack.
        static let maximumDepth = 512

        init(bytes: ArraySlice<UInt8>) {
            self.bytes = bytes
            self.index = bytes.startIndex
        }

        var isAtEnd: Bool { index >= bytes.endIndex }
        var offset: Int { index - bytes.startIndex }

        func fail(_ message: String) -> RawJSONError { RawJSONError(message, offset: offset) }

        func peek() -> UInt8? { index < bytes.endIndex ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while let byte = peek(), byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
                index += 1
            }
        }

        mutating func expect(_ byte: UInt8) throws(RawJSONError) {
            guard peek() == byte else { throw fail("expected '\(Character(Unicode.Scalar(byte)))'") }
            index += 1
        }

        mutating func scanObjectMembers() throws(RawJSONError) -> [Member] {
            try expect(UInt8(ascii: "{"))
            var members: [Member] = []
            skipWhitespace()
            if peek() == UInt8(ascii: "}") {
                index += 1
                return members
            }
            while true {
                skipWhitespace()
                let key = try scanString()
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                let start = index
                try skipValue(depth: 1)
                members.append(Member(key: key, value: bytes[start..<index]))
                skipWhitespace()
                switch peek() {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"): index += 1; return members
                default: throw fail("expected ',' or '}' in object")
                }
            }
        }

        mutating func scanArrayElements() throws(RawJSONError) -> [ArraySlice<UInt8>] {
            try expect(UInt8(ascii: "["))
            var elements: [ArraySlice<UInt8>] = []
            skipWhitespace()
            if peek() == UInt8(ascii: "]") {
                index += 1
                return elements
            }
            while true {
                skipWhitespace()
                let start = index
                try skipValue(depth: 1)
                elements.append(bytes[start..<index])
                skipWhitespace()
                switch peek() {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"): index += 1; return elements
                default: throw fail("expected ',' or ']' in array")
                }
            }
        }

        mutating func skipValue(depth: Int = 0) throws(RawJSONError) {
            guard depth <= Self.maximumDepth else { throw fail("nesting too deep") }
            guard let byte = peek() else { throw fail("unexpected end of input") }
            switch byte {
            case UInt8(ascii: "{"):
                index += 1
                skipWhitespace()
                if peek() == UInt8(ascii: "}") { index += 1; return }
                while true {
                    skipWhitespace()
                    try skipString()
                    skipWhitespace()
                    try expect(UInt8(ascii: ":"))
                    skipWhitespace()
                    try skipValue(depth: depth + 1)
                    skipWhitespace()
                    switch peek() {
                    case UInt8(ascii: ","): index += 1
                    case UInt8(ascii: "}"): index += 1; return
                    default: throw fail("expected ',' or '}' in object")
                    }
                }
            case UInt8(ascii: "["):
                index += 1
                skipWhitespace()
                if peek() == UInt8(ascii: "]") { index += 1; return }
                while true {
                    skipWhitespace()
                    try skipValue(depth: depth + 1)
                    skipWhitespace()
                    switch peek() {
                    case UInt8(ascii: ","): index += 1
                    case UInt8(ascii: "]"): index += 1; return
                    default: throw fail("expected ',' or ']' in array")
                    }
                }
            case UInt8(ascii: "\""):
                try skipString()
            case UInt8(ascii: "t"): try skipLiteral("true")
            case UInt8(ascii: "f"): try skipLiteral("false")
            case UInt8(ascii: "n"): try skipLiteral("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                try skipNumber()
            default:
                throw fail("unexpected byte \(byte)")
            }
        }

        mutating func skipLiteral(_ literal: String) throws(RawJSONError) {
            for expected in literal.utf8 {
                guard peek() == expected else { throw fail("invalid literal") }
                index += 1
            }
        }

        /// Any number of any size: `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`.
        mutating func skipNumber() throws(RawJSONError) {
            if peek() == UInt8(ascii: "-") { index += 1 }
            guard let first = peek(), isDigit(first) else { throw fail("invalid number") }
            index += 1
            if first != UInt8(ascii: "0") {
                while let byte = peek(), isDigit(byte) { index += 1 }
            }
            if peek() == UInt8(ascii: ".") {
                index += 1
                guard let byte = peek(), isDigit(byte) else { throw fail("invalid number fraction") }
                while let byte = peek(), isDigit(byte) { index += 1 }
            }
            if let byte = peek(), byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
                index += 1
                if let sign = peek(), sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { index += 1 }
                guard let byte = peek(), isDigit(byte) else { throw fail("invalid number exponent") }
                while let byte = peek(), isDigit(byte) { index += 1 }
            }
        }

        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

        mutating func skipString() throws(RawJSONError) {
            try expect(UInt8(ascii: "\""))
            while true {
                index = endOfPlainRun(from: index)
                guard let byte = peek() else { break }
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return
                case UInt8(ascii: "\\"):
                    index += 1
                    guard let escaped = peek() else { throw fail("unterminated escape") }
                    index += 1
                    if escaped == UInt8(ascii: "u") {
                        _ = try scanHex4()
                    } else if !Self.simpleEscapes.keys.contains(escaped) {
                        throw fail("invalid escape")
                    }
                default:
                    // A plain run ends only at a quote, a backslash or a control character.
                    throw fail("control character in string")
                }
            }
            throw fail("unterminated string")
        }

        /// The index of the first byte at or after `start` that ends a run of plain string bytes (a
        /// quote, a backslash or a control character), or the end: one tight loop over the buffer,
        /// no optional or bounds check a byte (strings are most of a job view's bytes).
        func endOfPlainRun(from start: Int) -> Int {
            bytes.withUnsafeBufferPointer { buffer in
                var i = start - bytes.startIndex
                while i < buffer.count {
                    let byte = buffer[i]
                    if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                    i += 1
                }
                return i + bytes.startIndex
            }
        }

        static let simpleEscapes: [UInt8: UInt8] = [
            UInt8(ascii: "\""): UInt8(ascii: "\""), UInt8(ascii: "\\"): UInt8(ascii: "\\"),
            UInt8(ascii: "/"): UInt8(ascii: "/"), UInt8(ascii: "b"): 0x08, UInt8(ascii: "f"): 0x0C,
            UInt8(ascii: "n"): 0x0A, UInt8(ascii: "r"): 0x0D, UInt8(ascii: "t"): 0x09,
        ]

        mutating func scanHex4() throws(RawJSONError) -> UInt16 {
            var value: UInt16 = 0
            for _ in 0..<4 {
                guard let byte = peek() else { throw fail("short \\u escape") }
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw fail("invalid \\u escape")
                }
                value = value << 4 | UInt16(digit)
                index += 1
            }
            return value
        }

        /// Scans a string literal and returns it with escapes resolved. Lone surrogates and
        /// invalid UTF-8 become U+FFFD.
        mutating func scanString() throws(RawJSONError) -> String {
            try expect(UInt8(ascii: "\""))
            // Most strings have no escape: the bytes between the quotes are the string, made in
            // one step (no copy at all up to 15 bytes, Swift's small strings).
            let start = index
            while let byte = peek(), byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\"), byte >= 0x20 { index += 1 }
            if peek() == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: bytes[start..<(index - 1)], as: UTF8.self)
            }
            var utf8 = Array(bytes[start..<index])
            while let byte = peek() {
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return String(decoding: utf8, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    index += 1
                    guard let escaped = peek() else { throw fail("unterminated escape") }
                    index += 1
                    if escaped == UInt8(ascii: "u") {
                        let unit = try scanHex4()
                        var scalar: Unicode.Scalar?
                        if UTF16.isLeadSurrogate(unit), peek() == UInt8(ascii: "\\"),
                           index + 1 < bytes.endIndex, bytes[index + 1] == UInt8(ascii: "u") {
                            let save = index
                            index += 2
                            let low = try scanHex4()
                            if UTF16.isTrailSurrogate(low) {
                                let value = 0x10000 + (UInt32(unit - 0xD800) << 10) + UInt32(low - 0xDC00)
                                scalar = Unicode.Scalar(value)
                            } else {
                                index = save
                            }
                        } else {
                            scalar = Unicode.Scalar(unit)
                        }
                        utf8.append(contentsOf: String(Character(scalar ?? "\u{FFFD}")).utf8)
                    } else if let resolved = Self.simpleEscapes[escaped] {
                        utf8.append(resolved)
                    } else {
                        throw fail("invalid escape")
                    }
                case 0x00..<0x20:
                    throw fail("control character in string")
                default:
                    utf8.append(byte)
                    index += 1
                }
            }
            throw fail("unterminated string")
        }
    }
}
