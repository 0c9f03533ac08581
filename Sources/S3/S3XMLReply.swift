import Foundation

#if canImport(FoundationXML)
import FoundationXML
#endif

/// A small XML reply from S3, read for the text of its elements: the root's name, and the first
/// text found for each element name (namespace prefixes dropped).
///
/// Hostile input is refused, not trapped on: over 1 MiB, any DTD (so no entity expansion), or
/// XML that does not parse to the end. On Linux, XMLParser.parse() returns true for a truncated
/// document or one with content after the root (it only tells the delegate), so the delegate's
/// error callback is what decides, and the root must have closed.
struct S3XMLReply {
    static let maximumSize = 1024 * 1024

    let root: String
    let values: [String: String]

    init(_ data: Data) throws(S3Error) {
        guard !data.isEmpty, data.count <= Self.maximumSize else {
            throw S3Error(.malformedReply, "the reply body is empty or over 1 MiB (\(data.count) bytes)")
        }
        guard Self.hasNoDeclarations(data) else {
            throw S3Error(.malformedReply, "the reply has a DTD or declarations S3 never sends")
        }
        let collector = Collector()
        let parser = XMLParser(data: data)
        parser.shouldProcessNamespaces = false
        parser.shouldResolveExternalEntities = false
        parser.delegate = collector
        guard parser.parse(), collector.isComplete, let root = collector.root else {
            throw S3Error(.malformedReply, "the reply is not well-formed XML")
        }
        self.root = root
        self.values = collector.values
    }

    /// True when every `<!` in the document opens a comment or CDATA section, not a DTD or entity.
    private static func hasNoDeclarations(_ data: Data) -> Bool {
        let bytes = [UInt8](data)
        var index = bytes.startIndex
        while let found = bytes[index...].firstIndex(of: UInt8(ascii: "<")) {
            let rest = bytes[found...]
            if rest.starts(with: "<!".utf8), !rest.starts(with: "<!--".utf8), !rest.starts(with: "<![CDATA[".utf8) {
                return false
            }
            index = bytes.index(after: found)
        }
        return true
    }

    private final class Collector: NSObject, XMLParserDelegate {
        var root: String?
        var values: [String: String] = [:]
        /// The text of each open element, innermost last.
        private var texts: [String] = []
        private var rootClosed = false
        private var failed = false

        /// The root element closed and the parser reported no error.
        var isComplete: Bool { rootClosed && !failed }

        func parser(_ parser: XMLParser, parseErrorOccurred parseError: any Error) {
            failed = true
        }

        func parser(
            _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
            qualifiedName: String?, attributes: [String: String] = [:]
        ) {
            if root == nil { root = Self.localName(elementName) }
            texts.append("")
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            guard !texts.isEmpty else { return }
            texts[texts.count - 1] += string
        }

        func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
            self.parser(parser, foundCharacters: String(decoding: CDATABlock, as: UTF8.self))
        }

        func parser(
            _ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?
        ) {
            let text = texts.popLast() ?? ""
            if texts.isEmpty { rootClosed = true }
            let name = Self.localName(elementName)
            if values[name] == nil {
                values[name] = text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }

        private static func localName(_ name: String) -> String {
            name.split(separator: ":").last.map(String.init) ?? name
        }
    }
}
