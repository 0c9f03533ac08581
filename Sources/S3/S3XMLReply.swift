import Foundation

/// A small XML reply from S3, read for the text of its elements: the root's name, and the first
/// text found for each element name (namespace prefixes dropped).
///
/// A byte scanner of its own, not Foundation's `XMLParser`: on Linux that one trapped inside
/// `_NSXMLParserStartElementNs` on a hostile input in a full test run (a crash in the gateway's
/// process for a bad reply from a bucket). This one never traps: every index is checked, nesting
/// is a heap array (no recursion), and anything it does not expect is refused: over 1 MiB, a DTD
/// or any declaration other than a comment or CDATA, a tag that does not close, an end tag that
/// does not match, text outside the root, a second root.
struct S3XMLReply {
    static let maximumSize = 1024 * 1024

    let root: String
    let values: [String: String]

    init(_ data: Data) throws(S3Error) {
        guard !data.isEmpty, data.count <= Self.maximumSize else {
            throw S3Error(.malformedReply, "the reply body is empty or over 1 MiB (\(data.count) bytes)")
        }
        guard let (root, values) = Self.scan([UInt8](data)) else {
            throw S3Error(.malformedReply, "the reply is not well-formed XML")
        }
        self.root = root
        self.values = values
    }

    private static func scan(_ bytes: [UInt8]) -> (String, [String: String])? {
        var root: String?
        var values: [String: String] = [:]
        var open: [(name: String, text: [UInt8])] = []
        var rootClosed = false
        var index = 0
        let lt = UInt8(ascii: "<"), gt = UInt8(ascii: ">")
        while index < bytes.count {
            guard bytes[index] == lt else {
                // Text: only inside the root (whitespace may stand around it).
                let end = bytes[index...].firstIndex(of: lt) ?? bytes.count
                let text = bytes[index..<end]
                if open.isEmpty {
                    guard text.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) else { return nil }
                } else {
                    open[open.count - 1].text += text
                }
                index = end
                continue
            }
            let rest = bytes[index...]
            if rest.starts(with: "<?".utf8) {
                guard !rootClosed, root == nil, let end = find("?>", in: bytes, from: index + 2) else { return nil }
                index = end + 2
            } else if rest.starts(with: "<!--".utf8) {
                guard let end = find("-->", in: bytes, from: index + 4) else { return nil }
                index = end + 3
            } else if rest.starts(with: "<![CDATA[".utf8) {
                guard !open.isEmpty, let end = find("]]>", in: bytes, from: index + 9) else { return nil }
                open[open.count - 1].text += bytes[(index + 9)..<end]
                index = end + 3
            } else if rest.starts(with: "<!".utf8) {
                return nil  // a DTD or a declaration: S3 sends none
            } else {
                guard let close = bytes[index...].firstIndex(of: gt) else { return nil }
                let inside = bytes[(index + 1)..<close]
                index = close + 1
                if inside.first == UInt8(ascii: "/") {
                    guard let name = Self.name(inside.dropFirst()), let top = open.popLast(), top.name == name else { return nil }
                    let local = localName(name)
                    if values[local] == nil {
                        guard let text = decode(top.text) else { return nil }
                        values[local] = text.trimmingCharacters(in: .whitespacesAndNewlines)
                    }
                    if open.isEmpty { rootClosed = true }
                } else {
                    let selfClosing = inside.last == UInt8(ascii: "/")
                    guard !rootClosed, let name = Self.name(selfClosing ? inside.dropLast() : inside) else { return nil }
                    if root == nil { root = localName(name) }
                    if selfClosing {
                        if values[localName(name)] == nil { values[localName(name)] = "" }
                        if open.isEmpty { rootClosed = true }
                    } else {
                        open.append((name, []))
                    }
                }
            }
        }
        guard rootClosed, open.isEmpty, let root else { return nil }
        return (root, values)
    }

    /// The element name at the start of a tag's inside (attributes after whitespace are ignored).
    private static func name(_ inside: ArraySlice<UInt8>) -> String? {
        let end = inside.firstIndex { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D } ?? inside.endIndex
        let name = inside[inside.startIndex..<end]
        guard !name.isEmpty, name.count <= 256, name.allSatisfy({ $0 > 0x20 && $0 != UInt8(ascii: "<") && $0 != UInt8(ascii: "/") }) else { return nil }
        return String(decoding: name, as: UTF8.self)
    }

    private static func localName(_ name: String) -> String {
        name.split(separator: ":").last.map(String.init) ?? name
    }

    private static func find(_ needle: String, in bytes: [UInt8], from start: Int) -> Int? {
        guard start <= bytes.count else { return nil }
        return bytes[start...].firstRange(of: Array(needle.utf8))?.lowerBound
    }

    /// Text with XML's five entities and numeric references decoded; nil for an unknown or
    /// malformed reference.
    private static func decode(_ text: [UInt8]) -> String? {
        guard text.contains(UInt8(ascii: "&")) else { return String(decoding: text, as: UTF8.self) }
        var out = ""
        var index = 0
        while index < text.count {
            guard text[index] == UInt8(ascii: "&") else {
                let end = text[index...].firstIndex(of: UInt8(ascii: "&")) ?? text.count
                out += String(decoding: text[index..<end], as: UTF8.self)
                index = end
                continue
            }
            guard let semicolon = text[index...].prefix(12).firstIndex(of: UInt8(ascii: ";")) else { return nil }
            let entity = String(decoding: text[(index + 1)..<semicolon], as: UTF8.self)
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                let scalar: UInt32?
                if entity.hasPrefix("#x") { scalar = UInt32(entity.dropFirst(2), radix: 16) } else if entity.hasPrefix("#") { scalar = UInt32(entity.dropFirst(), radix: 10) } else { scalar = nil }
                guard let value = scalar.flatMap(Unicode.Scalar.init) else { return nil }
                out.unicodeScalars.append(value)
            }
            index = semicolon + 1
        }
        return out
    }
}
