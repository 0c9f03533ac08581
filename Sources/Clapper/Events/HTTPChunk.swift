import NIOCore

/// HTTP/1.1 chunked transfer coding (RFC 9112, section 7.1), for event streams written straight
/// to their channel: each write is whole chunks, so one encoded chunk can go to every stream.
enum HTTPChunk {
    /// `<size in hex>\r\n<bytes>\r\n`.
    static func wrap(_ bytes: ByteBuffer) -> ByteBuffer {
        wrap([bytes])
    }

    /// One chunk holding `parts` one after the other (nothing when they are all empty: an empty
    /// chunk would end the body).
    static func wrap(_ parts: [ByteBuffer]) -> ByteBuffer {
        let size = parts.reduce(0) { $0 + $1.readableBytes }
        guard size > 0 else { return ByteBuffer() }
        let header = String(size, radix: 16)
        var chunk = ByteBuffer()
        chunk.reserveCapacity(header.utf8.count + size + 4)
        chunk.writeString(header)
        chunk.writeStaticString("\r\n")
        for part in parts { chunk.writeImmutableBuffer(part) }
        chunk.writeStaticString("\r\n")
        return chunk
    }

    /// The bytes inside a chunk made by `wrap` (a slice: no copy).
    static func payload(of chunk: ByteBuffer) -> ByteBuffer {
        guard let headerEnd = chunk.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return ByteBuffer() }
        let start = headerEnd - chunk.readerIndex + 1
        return chunk.getSlice(at: chunk.readerIndex + start, length: max(0, chunk.readableBytes - start - 2)) ?? ByteBuffer()
    }

    /// The last chunk: the body ends here.
    static let last = ByteBuffer(string: "0\r\n\r\n")
}
