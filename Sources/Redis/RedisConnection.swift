internal import CHiredis
import Glibc

/// One blocking hiredis `redisContext`, binary-safe, used by one thread at a time: the pub/sub
/// subscriber's connection, on its own thread. Commands go through `RedisPipelineConnection`.
///
/// Not `Sendable`: the subscriber's read loop opens, uses and closes it on its one thread (other
/// threads only `shutdown(2)` the socket by its number, never touch the context).
final class RedisConnection {
    private var context: UnsafeMutablePointer<redisContext>?
    /// Set once an I/O or protocol error leaves the context unusable.
    private(set) var isBroken = false

    private init(context: UnsafeMutablePointer<redisContext>) {
        self.context = context
    }

    deinit {
        if let context { redisFree(context) }
    }

    /// Connects, sets the command timeout, then AUTH and SELECT as the URL asks. Blocking.
    static func connect(_ configuration: RedisConfiguration) throws(RedisError) -> RedisConnection {
        let connectTimeout = configuration.connectTimeout.timeval
        let tv = timeval(tv_sec: connectTimeout.seconds, tv_usec: connectTimeout.microseconds)
        guard let context = redisConnectWithTimeout(configuration.url.host, Int32(configuration.url.port), tv) else {
            throw RedisError(.connectionFailed, "could not allocate a connection")
        }
        let connection = RedisConnection(context: context)
        if context.pointee.err != 0 {
            throw RedisError(.connectionFailed, "\(configuration.url.host):\(configuration.url.port): \(Self.errorText(context))")
        }
        let commandTimeout = configuration.commandTimeout.timeval
        redisSetTimeout(context, timeval(tv_sec: commandTimeout.seconds, tv_usec: commandTimeout.microseconds))
        redisEnableKeepAlive(context)

        let setup = configuration.url.handshake
        if !setup.isEmpty {
            let replies: [RedisValue]
            do {
                replies = try connection.execute(setup)
            } catch {
                throw RedisError(.connectionFailed, error.message)
            }
            for reply in replies {
                if case .error(let message) = reply {
                    throw RedisError(.connectionFailed, message)
                }
            }
        }
        return connection
    }

    /// Sends every command, then reads one reply per command: one round trip. Blocking.
    /// Error replies come back as `.error` values; a broken connection throws.
    func execute(_ commands: [RedisCommand]) throws(RedisError) -> [RedisValue] {
        guard let context, !isBroken else {
            throw RedisError(.connectionClosed, "connection is closed")
        }
        for command in commands {
            if Self.append(command, to: context) != REDIS_OK {
                throw fail(context)
            }
        }
        var replies: [RedisValue] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            if redisGetReply(context, &raw) != REDIS_OK || raw == nil {
                throw fail(context)
            }
            let reply = raw!.assumingMemoryBound(to: redisReply.self)
            replies.append(RedisValue(reply: reply))
            freeReplyObject(raw)
        }
        return replies
    }

    /// Queues a command without reading its replies (for pub/sub); the next read sends it.
    func enqueue(_ command: RedisCommand) throws(RedisError) {
        guard let context, !isBroken else {
            throw RedisError(.connectionClosed, "connection is closed")
        }
        if Self.append(command, to: context) != REDIS_OK {
            throw fail(context)
        }
    }

    /// Reads one reply without sending anything (for pub/sub). Blocking.
    func readReply() throws(RedisError) -> RedisValue {
        guard let context, !isBroken else {
            throw RedisError(.connectionClosed, "connection is closed")
        }
        var raw: UnsafeMutableRawPointer?
        if redisGetReply(context, &raw) != REDIS_OK || raw == nil {
            throw fail(context)
        }
        let value = RedisValue(reply: raw!.assumingMemoryBound(to: redisReply.self))
        freeReplyObject(raw)
        return value
    }

    /// Removes the read timeout (a subscriber waits for messages as long as it takes).
    func disableReadTimeout() {
        guard let context else { return }
        redisSetTimeout(context, timeval(tv_sec: 0, tv_usec: 0))
    }

    /// The socket, for `shutdown(2)` from another thread; -1 once closed.
    var fileDescriptor: Int32 { context?.pointee.fd ?? -1 }

    func close() {
        if let context {
            redisFree(context)
            self.context = nil
        }
        isBroken = true
    }

    private func fail(_ context: UnsafeMutablePointer<redisContext>) -> RedisError {
        isBroken = true
        let text = Self.errorText(context)
        let err = context.pointee.err
        if err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK || text.contains("temporarily unavailable")) {
            return RedisError(.timeout, "no reply within the command timeout")
        }
        if err == REDIS_ERR_PROTOCOL {
            return RedisError(.protocolError, text)
        }
        return RedisError(.connectionClosed, text.isEmpty ? "connection lost" : text)
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: &context.pointee.errstr) { raw in
            let bytes = raw.prefix(while: { $0 != 0 })
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Lays every argument out in one buffer and passes pointers into it: they never leave this scope.
    private static func append(_ command: RedisCommand, to context: UnsafeMutablePointer<redisContext>) -> Int32 {
        let arguments = command.arguments
        var flat: [UInt8] = []
        flat.reserveCapacity(arguments.reduce(0) { $0 + $1.count } + 1)
        var offsets: [Int] = []
        var lengths: [Int] = []
        offsets.reserveCapacity(arguments.count)
        lengths.reserveCapacity(arguments.count)
        for argument in arguments {
            offsets.append(flat.count)
            lengths.append(argument.count)
            flat.append(contentsOf: argument)
        }
        flat.append(0)  // a valid address even when every argument is empty
        return flat.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var argv: [UnsafePointer<CChar>?] = offsets.map { base + $0 }
            return argv.withUnsafeMutableBufferPointer { argvBuffer in
                lengths.withUnsafeBufferPointer { lengthBuffer in
                    redisAppendCommandArgv(context, Int32(arguments.count), argvBuffer.baseAddress, lengthBuffer.baseAddress)
                }
            }
        }
    }
}
