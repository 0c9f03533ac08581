import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Redis over a few non-blocking connections on a SwiftNIO event loop (`poolSize` of them, on
/// `sharedEventLoopGroup` unless told otherwise). Each connection carries many commands at once:
/// callers never wait for one another's replies, only for the socket, and commands queued in one
/// event-loop turn go out in one write.
///
/// A connection that breaks or times out is closed; the next caller opens a new one (waiting at
/// most `poolTimeout` for it), with a backoff while Redis stays unreachable. Callers spread over
/// the connections round robin, skipping one that is being reopened when another is open.
///
/// Run it as a `Service` placed before everything that uses it: it closes its connections on
/// graceful shutdown.
public final class RedisClient: Service, Sendable {
    public let configuration: RedisConfiguration
    private let slots: [Slot]
    private let nextSlot = Atomic<Int>(0)
    private let inFlight = Atomic<Int>(0)
    private let waiting = Atomic<Int>(0)
    private let logger: Logger
    private let inUseGauge = Gauge(label: "clapper_redis_pool_in_use")
    private let waitersGauge = Gauge(label: "clapper_redis_pool_waiters")

    private typealias Attempt = EventLoopPromise<RedisPipelineConnection>

    /// One connection's place: the event loop it lives on and the rules of its life.
    private final class Slot: Sendable {
        let eventLoop: any EventLoop
        let state = Mutex(ConnectionSlotStateMachine<RedisPipelineConnection, Attempt>())

        init(eventLoop: any EventLoop) {
            self.eventLoop = eventLoop
        }
    }

    /// One event-loop thread for the Redis connections of every client in the process (like NIO's
    /// singleton, never shut down). Callers run on the cooperative pool and hop to a loop either
    /// way; a loop of Redis's own is not held up by HTTP work, and a client's connections on one
    /// loop see a Redis restart together (each close is handled before the next caller picks).
    public static let sharedEventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    public init(
        configuration: RedisConfiguration,
        logger: Logger = Logger(label: "redis"),
        eventLoopGroup: any EventLoopGroup = RedisClient.sharedEventLoopGroup
    ) {
        self.configuration = configuration
        self.logger = logger
        self.slots = (0..<configuration.poolSize).map { _ in Slot(eventLoop: eventLoopGroup.next()) }
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Closes the connections; later and waiting callers fail with `.shutdown`. Idempotent.
    public func shutdown() async {
        var closing: [EventLoopFuture<Void>] = []
        for slot in slots {
            let (connection, attempt) = slot.state.withLock { $0.shutdown() }
            attempt?.fail(RedisError(.shutdown, "Redis client is shut down"))
            if let connection {
                connection.close()
                closing.append(connection.closeFuture)
            }
        }
        for future in closing { try? await future.get() }
    }

    /// Sends one command; an error reply throws `RedisError` with code `.server` and Redis's message.
    @discardableResult
    public func send(_ command: RedisCommand) async throws(RedisError) -> RedisValue {
        let replies = try await pipeline([command])
        guard let reply = replies.first else { throw RedisError(.protocolError, "no reply") }
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }

    @discardableResult
    public func send(_ name: String, _ arguments: any RedisArgumentConvertible...) async throws(RedisError) -> RedisValue {
        try await send(RedisCommand(name, arguments: arguments))
    }

    /// Sends every command in one batch, back to back on one connection. Error replies come back
    /// as `.error` values in place.
    ///
    /// A batch refused by a connection that had just closed (Redis restarted, its close not yet
    /// seen when the caller picked it) was never sent: it goes once more, on a fresh connection.
    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisValue] {
        // No reply would ever complete an empty batch.
        guard !commands.isEmpty else { return [] }
        inUseGauge.record(inFlight.wrappingAdd(1, ordering: .relaxed).newValue)
        defer { inUseGauge.record(inFlight.wrappingSubtract(1, ordering: .relaxed).newValue) }
        do {
            return try await connection().execute(commands).get()
        } catch is NotSent {
            // Fall through: the picked connection had just closed.
        } catch {
            throw Self.redisError(error)
        }
        do {
            return try await connection().execute(commands).get()
        } catch {
            throw Self.redisError(error)
        }
    }

    /// Runs a script by SHA; on `NOSCRIPT` loads it and runs it again, in one round trip.
    public func eval(_ script: RedisScript, keys: [String], arguments: [any RedisArgumentConvertible]) async throws(RedisError) -> RedisValue {
        let call = RedisCommand("EVALSHA", arguments: [script.sha1, keys.count] + keys + arguments)
        var reply = try await pipeline([call]).first ?? .null
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
            let replies = try await pipeline([RedisCommand("SCRIPT", "LOAD", script.source), call])
            reply = replies.last ?? .null
        }
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }

    /// Commands sent and not yet answered, and callers waiting for a connection to open.
    public var poolStatus: (inUse: Int, waiting: Int) {
        (inFlight.load(ordering: .relaxed), waiting.load(ordering: .relaxed))
    }

    // MARK: - Connections

    private func connection() async throws(RedisError) -> RedisPipelineConnection {
        let first = nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue
        let start = Int(truncatingIfNeeded: UInt(bitPattern: first) % UInt(slots.count))
        let slot = slots[start]
        let action = slot.state.withLock {
            $0.use(now: .now(), isUsable: \.isActive, makeAttempt: { slot.eventLoop.makePromise() })
        }
        let attempt: Attempt
        switch action {
        case .use(let connection):
            return connection
        case .shutdown:
            throw RedisError(.shutdown, "Redis client is shut down")
        case .connect(let started, let delay):
            open(slot, completing: started, after: delay)
            attempt = started
        case .wait(let pending):
            attempt = pending
        }
        // This slot is opening: another open connection serves the caller meanwhile.
        for offset in 1..<slots.count {
            let other = slots[(start + offset) % slots.count]
            let ready: RedisPipelineConnection? = other.state.withLock {
                if case .ready(let connection) = $0.state, connection.isActive { return connection }
                return nil
            }
            if let ready { return ready }
        }
        return try await wait(for: attempt, on: slot.eventLoop)
    }

    private func open(_ slot: Slot, completing attempt: Attempt, after delay: TimeAmount) {
        let configuration = self.configuration
        let logger = self.logger
        let opening: EventLoopFuture<RedisPipelineConnection>
        if delay > .zero {
            opening = slot.eventLoop.flatScheduleTask(in: delay) {
                RedisPipelineConnection.connect(configuration, on: slot.eventLoop)
            }.futureResult
        } else {
            opening = RedisPipelineConnection.connect(configuration, on: slot.eventLoop)
        }
        opening.whenComplete { result in
            switch result {
            case .success(let connection):
                guard slot.state.withLock({ $0.connected(connection) }) else {
                    connection.close()
                    attempt.fail(RedisError(.shutdown, "Redis client is shut down"))
                    return
                }
                connection.closeFuture.whenComplete { _ in
                    slot.state.withLock { $0.closed(connection) }
                }
                attempt.succeed(connection)
            case .failure(let error):
                let failures = slot.state.withLock { $0.connectFailed(now: .now()) }
                let redisError = Self.redisError(error)
                if failures == 1 {
                    logger.warning("Redis unreachable; reconnecting with backoff", metadata: ["error": "\(redisError.message)"])
                }
                attempt.fail(redisError)
            }
        }
    }

    /// Waits for an opening, at most `poolTimeout`.
    private func wait(for attempt: Attempt, on eventLoop: any EventLoop) async throws(RedisError) -> RedisPipelineConnection {
        waitersGauge.record(waiting.wrappingAdd(1, ordering: .relaxed).newValue)
        defer { waitersGauge.record(waiting.wrappingSubtract(1, ordering: .relaxed).newValue) }
        let bounded = eventLoop.makePromise(of: RedisPipelineConnection.self)
        let poolTimeout = configuration.poolTimeout
        let timer = eventLoop.scheduleTask(in: .nanoseconds(poolTimeout.nanoseconds)) {
            bounded.fail(RedisError(.poolTimeout, "no Redis connection within \(poolTimeout)"))
        }
        attempt.futureResult.whenComplete { result in
            timer.cancel()
            bounded.completeWith(result)
        }
        do {
            return try await bounded.futureResult.get()
        } catch {
            throw Self.redisError(error)
        }
    }

    private static func redisError(_ error: any Error) -> RedisError {
        if let error = error as? RedisError { return error }
        if error is NotSent { return RedisError(.connectionClosed, "connection closed") }
        return RedisError(.connectionClosed, "\(error)")
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
