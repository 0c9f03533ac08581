import Logging
import Metrics
import NIOCore
import NIOPosix
import Synchronization

/// Connections to one Redis node: a few non-blocking connections on a SwiftNIO event loop
/// (`poolSize` of them). Each connection carries many commands at once: callers never wait for
/// one another's replies, only for the socket, and commands queued in one event-loop turn go out
/// in one write.
///
/// A connection that breaks or times out is closed; the next caller opens a new one (waiting at
/// most `poolTimeout` for it), with a backoff while Redis stays unreachable. Callers spread over
/// the connections round robin (a caller on one of the connections' event loops among that loop's
/// own), skipping one that is being reopened when another is open.
/// `RedisClient` is the public face: one of these for a single Redis, one per node of a cluster.
final class RedisNodeClient: Sendable {
    let configuration: RedisConfiguration
    private let slots: [Slot]
    /// The slots on each of the slots' event loops, by loop.
    private let slotsOnLoop: [ObjectIdentifier: [Int]]
    private let nextSlot = Atomic<Int>(0)
    /// Connections lost without our asking so far: each connection notes the count when it is
    /// handed out (`RedisPipelineConnection.established`).
    private let losses = Atomic<Int>(0)
    private let counters: RedisPoolCounters
    private let logger: Logger

    private typealias Attempt = EventLoopPromise<RedisPipelineConnection>

    /// One connection's place: the event loop it lives on and the rules of its life.
    private final class Slot: Sendable {
        let eventLoop: any EventLoop
        let state = Mutex(ConnectionSlotStateMachine<RedisPipelineConnection, Attempt>())

        init(eventLoop: any EventLoop) {
            self.eventLoop = eventLoop
        }
    }

    init(configuration: RedisConfiguration, counters: RedisPoolCounters, logger: Logger, eventLoopGroup: any EventLoopGroup) {
        self.configuration = configuration
        self.counters = counters
        self.logger = logger
        // Spread over the group's loops in turn: with as many connections as loops (the gateway's
        // default), a caller running on a loop (NIO's loops as Swift Concurrency's executor) has
        // a connection at home.
        let loops = Array(eventLoopGroup.makeIterator())
        let slots = (0..<configuration.poolSize).map { index in
            Slot(eventLoop: loops.isEmpty ? eventLoopGroup.next() : loops[index % loops.count])
        }
        self.slots = slots
        self.slotsOnLoop = Dictionary(grouping: slots.indices) { ObjectIdentifier(slots[$0].eventLoop) }
    }

    /// Closes the connections; later and waiting callers fail with `.shutdown`. Idempotent.
    func shutdown() async {
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

    /// Sends every command in one batch, back to back on one connection. Error replies come back
    /// as `.error` values in place.
    ///
    /// A batch refused by a connection that had just closed (Redis restarted, its close not yet
    /// seen when the caller picked it) was never sent: it goes once more, on a fresh connection.
    func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisValue] {
        // No reply would ever complete an empty batch.
        guard !commands.isEmpty else { return [] }
        counters.startCommand()
        defer { counters.endCommand() }
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

    // MARK: - Connections

    /// The slot a caller starts from: round robin among the slots on the caller's own event loop
    /// when it runs on one (its command is written, and its reply read, without a thread hop),
    /// else among all.
    func firstSlot() -> Int {
        let turn = UInt(bitPattern: nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue)
        if let loop = MultiThreadedEventLoopGroup.currentEventLoop, let local = slotsOnLoop[ObjectIdentifier(loop)] {
            return local[Int(truncatingIfNeeded: turn % UInt(local.count))]
        }
        return Int(truncatingIfNeeded: turn % UInt(slots.count))
    }

    /// The event loop a slot's connection lives on.
    func eventLoop(ofSlot index: Int) -> any EventLoop {
        slots[index].eventLoop
    }

    private func connection() async throws(RedisError) -> RedisPipelineConnection {
        let start = firstSlot()
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
        let onLost: @Sendable (RedisPipelineConnection) -> Void = { [weak self] lost in self?.retire(since: lost) }
        if delay > .zero {
            opening = slot.eventLoop.flatScheduleTask(in: delay) {
                RedisPipelineConnection.connect(configuration, on: slot.eventLoop, onLost: onLost)
            }.futureResult
        } else {
            opening = RedisPipelineConnection.connect(configuration, on: slot.eventLoop, onLost: onLost)
        }
        opening.whenComplete { result in
            switch result {
            case .success(let connection):
                connection.established.store(self.losses.load(ordering: .relaxed), ordering: .relaxed)
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

    /// A connection was lost without our asking (Redis restarted, or went away): every connection
    /// handed out no later than it was is taken out of use now, on the lost one's loop, before its
    /// callers hear of the loss, so the next caller opens a fresh connection instead of meeting
    /// a sibling whose close its own loop has not read yet (connections live on several loops).
    /// Taken out, a connection still answers what was sent on it, then closes; one handed out
    /// after the loss (to the Redis that is back) is kept.
    private func retire(since lost: RedisPipelineConnection) {
        let before = lost.established.load(ordering: .relaxed)
        guard before >= 0 else { return }
        losses.wrappingAdd(1, ordering: .relaxed)
        for slot in slots {
            let retired: RedisPipelineConnection? = slot.state.withLock { state in
                guard case .ready(let connection) = state.state, connection.established.load(ordering: .relaxed) <= before else { return nil }
                state.closed(connection)
                return connection
            }
            if let retired, retired !== lost { retired.drain() }
        }
    }

    /// Waits for an opening, at most `poolTimeout`.
    private func wait(for attempt: Attempt, on eventLoop: any EventLoop) async throws(RedisError) -> RedisPipelineConnection {
        counters.startWaiting()
        defer { counters.endWaiting() }
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

    static func redisError(_ error: any Error) -> RedisError {
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
