internal import CHiredis

/// hiredis's RESP parser (`redisReaderCreate`/`Feed`/`GetReply`) without its socket: bytes go in
/// as they arrive, whole replies come out in order.
///
/// Not `Sendable`: it lives inside one channel handler, on that channel's event loop.
final class RedisReplyReader {
    private let reader: UnsafeMutablePointer<redisReader>

    init?() {
        guard let reader = redisReaderCreate() else { return nil }
        self.reader = reader
    }

    deinit {
        redisReaderFree(reader)
    }

    /// Hands received bytes to the parser (it copies them).
    func feed(_ bytes: UnsafeRawBufferPointer) throws(RedisError) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        if redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count) != REDIS_OK {
            throw RedisError(.protocolError, errorText)
        }
    }

    /// The next whole reply, or nil until more bytes arrive. After a throw the reader is unusable
    /// (hiredis keeps its error): the connection must be closed.
    func next() throws(RedisError) -> RedisValue? {
        var raw: UnsafeMutableRawPointer?
        if redisReaderGetReply(reader, &raw) != REDIS_OK {
            throw RedisError(.protocolError, errorText)
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return RedisValue(reply: raw.assumingMemoryBound(to: redisReply.self))
    }

    private var errorText: String {
        withUnsafeBytes(of: &reader.pointee.errstr) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }
}
