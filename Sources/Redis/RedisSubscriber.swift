import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A pub/sub subscription on a connection of its own, delivering messages as an `AsyncSequence`
/// (or to a handler on its thread, `onEvent`).
///
/// The blocking read loop runs on a dedicated thread. When the connection drops it reconnects
/// with backoff, subscribes again and yields `.resubscribed`, so the consumer knows messages
/// may have been missed. Graceful shutdown wakes the blocked read with `shutdown(2)` on its socket.
///
/// With `sharded`, the channels are Redis 7 shard channels (`SSUBSCRIBE`, all of one slot) and
/// `node` names, before every connect, the node that serves them (a cluster's master of their
/// slot); a slot that moves away ends the subscription (`sunsubscribe`) as a dropped connection does.
public final class RedisSubscriber: Service, Sendable {
    public enum Event: Sendable, Hashable {
        /// The first subscription is in place.
        case subscribed
        /// The connection dropped and the subscription is back: messages may have been missed.
        case resubscribed
        /// The consumer fell behind and messages were dropped from the buffer.
        case overflow
        case message(channel: String, payload: [UInt8])
    }

    public let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let configuration: RedisConfiguration
    private let channels: [String]
    private let sharded: Bool
    private let node: (@Sendable () -> RedisURL?)?
    /// Called on the subscription's thread each time its connection fails or drops, before it
    /// reconnects (a gap in the messages starts here).
    private let onLost: (@Sendable () -> Void)?
    private let logger: Logger
    private let thread = NIOThreadPool(numberOfThreads: 1)
    /// The live socket (or -1) and whether we are stopping, changed together so a socket
    /// number is only shut down while this subscriber still owns it.
    private let socket = Mutex<(fd: Int32, stopped: Bool)>((-1, false))
    /// Wakes the reconnect backoff early: value 1 once stopping.
    private let wake = ConditionLock<Int>(value: 0)
    private let overflowed = Atomic<Bool>(false)
    /// Set by `onEvent` (before `run`): where events go instead of `events`.
    private let eventHandler = Mutex<(@Sendable (Event) -> Void)?>(nil)

    public init(
        configuration: RedisConfiguration,
        channels: [String],
        sharded: Bool = false,
        node: (@Sendable () -> RedisURL?)? = nil,
        onLost: (@Sendable () -> Void)? = nil,
        bufferSize: Int = 65_536,
        logger: Logger = Logger(label: "redis.subscriber")
    ) {
        precondition(!channels.isEmpty)
        self.configuration = configuration
        self.channels = channels
        self.sharded = sharded
        self.node = node
        self.onLost = onLost
        self.logger = logger
        (events, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingOldest(bufferSize))
    }

    /// Events go to `handler` instead of `events`, called on the subscription's own thread, one at
    /// a time and in order: no task wakes up for each message, and no buffer overflows. The handler
    /// may block (a catch-up after `.resubscribed`): what arrives meanwhile waits in the socket (and
    /// in Redis's output buffer, within its limits). Call it before `run`.
    public func onEvent(_ handler: @escaping @Sendable (Event) -> Void) {
        eventHandler.withLock { $0 = handler }
    }

    public func run() async throws {
        thread.start()
        defer { continuation.finish() }
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await thread.runIfActive { self.readLoop() }
            } onCancel: {
                self.stop()
            }
        } onGracefulShutdown: {
            self.stop()
        }
        try await thread.shutdownGracefully()
    }

    /// Ends the read loop: marks it stopping and shuts the live socket so a blocked read returns.
    public func stop() {
        socket.withLock { state in
            state.stopped = true
            if state.fd >= 0 { _ = Glibc.shutdown(state.fd, Int32(SHUT_RDWR)) }
        }
        wake.lock()
        wake.unlock(withValue: 1)
    }

    private var isStopped: Bool { socket.withLock { $0.stopped } }

    private func readLoop() {
        let handler = eventHandler.withLock { $0 }
        let emit = { (event: Event) in handler.map { $0(event) } ?? self.yield(event) }
        var subscribedOnce = false
        var backoff = 0.05
        while !isStopped {
            do {
                var configuration = self.configuration
                if let node {
                    guard let url = node() else { throw RedisError(.connectionFailed, "no node serves the channel yet") }
                    configuration.url = url
                }
                let connection = try RedisConnection.connect(configuration)
                connection.disableReadTimeout()
                let owned = socket.withLock { state -> Bool in
                    if state.stopped { return false }
                    state.fd = connection.fileDescriptor
                    return true
                }
                guard owned else {
                    connection.close()
                    break
                }
                defer {
                    socket.withLock { $0.fd = -1 }
                    connection.close()
                }
                try connection.enqueue(RedisCommand(sharded ? "SSUBSCRIBE" : "SUBSCRIBE", arguments: channels))
                for _ in channels {
                    // A node that no longer serves the slot answers MOVED: look again.
                    if case .error(let message) = try connection.readReply() { throw RedisError(.server, message) }
                }
                emit(subscribedOnce ? .resubscribed : .subscribed)
                subscribedOnce = true
                backoff = 0.05
                while true {
                    let reply = try connection.readReply()
                    guard let parts = reply.array, parts.count == 3, let kind = parts[0].string else { continue }
                    if kind == "sunsubscribe" { throw RedisError(.connectionClosed, "the shard channel's slot moved") }
                    guard kind == (sharded ? "smessage" : "message"), let channel = parts[1].string, let payload = parts[2].bytes else { continue }
                    emit(.message(channel: channel, payload: payload))
                }
            } catch {
                if isStopped { break }
                onLost?()
                // Once per outage: the first failure warns, the retries that follow are debug.
                if backoff == 0.05 {
                    logger.warning("Redis subscription lost; reconnecting", metadata: ["error": "\(error)", "retryIn": "\(backoff)s"])
                } else {
                    logger.debug("Redis subscription still down; retrying", metadata: ["error": "\(error)", "retryIn": "\(backoff)s"])
                }
            }
            if wake.lock(whenValue: 1, timeoutSeconds: backoff) {
                wake.unlock()
                break
            }
            backoff = min(backoff * 2, 2)
        }
    }

    private func yield(_ event: Event) {
        if overflowed.load(ordering: .relaxed) {
            if case .enqueued = continuation.yield(.overflow) {
                overflowed.store(false, ordering: .relaxed)
            } else {
                return
            }
        }
        if case .dropped = continuation.yield(event) {
            overflowed.store(true, ordering: .relaxed)
        }
    }
}
