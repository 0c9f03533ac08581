import NIOCore

/// The bytes of server-sent events (WHATWG HTML, "Server-sent events").
///
/// `data` is always written as ONE `data:` line: CR and LF (which valid JSON only holds as
/// whitespace between tokens) become spaces, and U+2028, U+2029 and U+0085 (valid raw inside
/// JSON strings, but line breaks to some clients' line splitters) become `\u2028`-style escapes,
/// which are the same JSON. No byte of the data can end the field or the event.
enum ServerSentEvent {
    /// `event: <name>` `id: <id>` `data: <one line>` and the blank line ending the event.
    static func frame(event: String, id: String? = nil, data: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(data.count + 64)
        buffer.writeString("event: \(event)\n")
        if let id { buffer.writeString("id: \(id)\n") }
        buffer.writeString("data: ")
        writeOneLine(data, to: &buffer)
        buffer.writeString("\n\n")
        return buffer
    }

    /// A comment line: ignored by clients, keeps proxies and the connection alive.
    static func comment(_ text: String) -> ByteBuffer {
        ByteBuffer(string: ": \(text.filter { $0 != "\n" && $0 != "\r" })\n\n")
    }

    /// How long a client waits before reconnecting.
    static func retry(milliseconds: Int, comment: String? = nil) -> ByteBuffer {
        var buffer = ByteBuffer(string: "retry: \(milliseconds)\n")
        if let comment { buffer.writeString(": \(comment.filter { $0 != "\n" && $0 != "\r" })\n") }
        buffer.writeString("\n")
        return buffer
    }

    static func writeOneLine(_ data: [UInt8], to buffer: inout ByteBuffer) {
        var index = 0
        var start = 0
        let count = data.count
        func flush(upTo end: Int, _ buffer: inout ByteBuffer) {
            if end > start { buffer.writeBytes(data[start..<end]) }
        }
        while index < count {
            let byte = data[index]
            if byte == 0x0A || byte == 0x0D {
                flush(upTo: index, &buffer)
                buffer.writeInteger(UInt8(ascii: " "))
                index += 1
                start = index
            } else if byte == 0xE2, index + 2 < count, data[index + 1] == 0x80, data[index + 2] == 0xA8 || data[index + 2] == 0xA9 {
                flush(upTo: index, &buffer)
                buffer.writeString(data[index + 2] == 0xA8 ? "\\u2028" : "\\u2029")
                index += 3
                start = index
            } else if byte == 0xC2, index + 1 < count, data[index + 1] == 0x85 {
                flush(upTo: index, &buffer)
                buffer.writeString("\\u0085")
                index += 2
                start = index
            } else {
                index += 1
            }
        }
        flush(upTo: count, &buffer)
    }
}
