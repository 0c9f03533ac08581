import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A bounded pool of hiredis connections whose blocking calls run on a dedicated
/// `NIOThreadPool` (never on an event loop or the cooperative pool).
///
/// Run it as a `Service` placed before everything that uses it: it closes its connections
/// and threads on graceful shutdown.
public final class RedisClient: Service, Sendable {
    public let configuration: RedisConfiguration
    private let threadPool: NIOThreadPool
    private let timerLoop: any EventLoop
    private let state: Mutex<PoolStateMachine<RedisConnection, CheckedContinuation<PoolGrant<RedisConnection>, any Error>>>
    private let nextWaiterID = Atomic<Int>(0)
    /// Deadline timers of waiting leases, cancelled once the lease is served.
    private let timers = Mutex<[Int: Scheduled<Void>]>([:])
    private let logger: Logger
    private let inUseGauge = Gauge(label: "clapper_redis_pool_in_use")
    private let waitersGauge = Gauge(label: "clapper_redis_pool_waiters")

    private typealias Grant = PoolGrant<RedisConnection>

    public init(configuration: RedisConfiguration, logger: Logger = Logger(label: "redis")) {
        self.configuration = configuration
        self.logger = logger
        self.threadPool = NIOThreadPool(numberOfThreads: configuration.poolSize)
        self.threadPool.start()
        self.timerLoop = MultiThreadedEventLoopGroup.singleton.next()
        self.state = Mutex(PoolStateMachine(maximum: configuration.poolSize))
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Fails waiting callers, closes idle connections and stops the threads. Idempotent.
    public func shutdown() async {
        let (idle, waiters) = state.withLock { $0.shutdown() }
        for waiter in waiters { waiter.resume(throwing: RedisError(.shutdown, "Redis client is shut down")) }
        for connection in idle { connection.close() }
        try? await threadPool.shutdownGracefully()
    }

    /// Sends one command; an error reply throws `RedisError` with code `.server` and Redis's message.
    @discardableResult
    public func send(_ command: RedisCommand) async throws(RedisError) -> RedisValue {
        let reply = try await pipeline([command])[0]
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }

    @discardableResult
    public func send(_ name: String, _ arguments: any RedisArgumentConvertible...) async throws(RedisError) -> RedisValue {
        try await send(RedisCommand(name, arguments: arguments))
    }

    /// Sends every command in one round trip. Error replies come back as `.error` values in place.
    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisValue] {
        let connection = try await lease()
        do {
            let replies = try await threadPool.runIfActive { try connection.execute(commands) }
            giveBack(connection)
            return replies
        } catch let error as RedisError {
            giveBack(connection)
            throw error
        } catch {
            giveBack(connection)
            throw RedisError(.shutdown, "Redis client is shut down")
        }
    }

    /// Runs a script by SHA; on `NOSCRIPT` loads it and runs it again, in one round trip.
    public func eval(_ script: RedisScript, keys: [String], arguments: [any RedisArgumentConvertible]) async throws(RedisError) -> RedisValue {
        let call = RedisCommand("EVALSHA", arguments: [script.sha1, keys.count] + keys + arguments)
        var reply = try await pipeline([call])[0]
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
            reply = try await pipeline([RedisCommand("SCRIPT", "LOAD", script.source), call])[1]
        }
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }

    /// Connections busy right now, and callers waiting for one.
    public var poolStatus: (inUse: Int, waiting: Int) {
        state.withLock { ($0.inUse, $0.waiting) }
    }

    // MARK: - Leasing

    private func lease() async throws(RedisError) -> RedisConnection {
        let id = nextWaiterID.wrappingAdd(1, ordering: .relaxed).newValue
        let grant: Grant
        do {
            grant = try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    let action = state.withLock { $0.lease(id: id, waiter: continuation) }
                    switch action {
                    case .grant(.connection(let connection)): continuation.resume(returning: .connection(connection))
                    case .grant(.create): continuation.resume(returning: .create)
                    case .shutdown: continuation.resume(throwing: RedisError(.shutdown, "Redis client is shut down"))
                    case .wait:
                        let timer = timerLoop.scheduleTask(in: .nanoseconds(Int64(configuration.poolTimeout.nanoseconds))) { [self] in
                            failWaiter(id, RedisError(.poolTimeout, "no Redis connection free within \(configuration.poolTimeout)"))
                        }
                        timers.withLock { $0[id] = timer }
                        // Cancelled before it was registered: onCancel found nothing to fail.
                        if Task.isCancelled {
                            failWaiter(id, RedisError(.timeout, "cancelled while waiting for a Redis connection"))
                        }
                    }
                    updateGauges()
                }
            } onCancel: {
                failWaiter(id, RedisError(.timeout, "cancelled while waiting for a Redis connection"))
            }
        } catch let error as RedisError {
            timers.withLock { $0.removeValue(forKey: id) }?.cancel()
            throw error
        } catch {
            timers.withLock { $0.removeValue(forKey: id) }?.cancel()
            throw RedisError(.shutdown, "\(error)")
        }
        timers.withLock { $0.removeValue(forKey: id) }?.cancel()
        switch grant {
        case .connection(let connection):
            return connection
        case .create:
            do {
                let configuration = self.configuration
                return try await threadPool.runIfActive { try RedisConnection.connect(configuration) }
            } catch {
                slotFreed()
                throw (error as? RedisError) ?? RedisError(.shutdown, "Redis client is shut down")
            }
        }
    }

    private func failWaiter(_ id: Int, _ error: RedisError) {
        let waiter = state.withLock { $0.removeWaiter(id: id) }
        waiter?.resume(throwing: error)
        updateGauges()
    }

    private func giveBack(_ connection: RedisConnection) {
        if connection.isBroken {
            connection.close()
            let stale = state.withLock { $0.dropIdle() }
            for idle in stale { idle.close() }
            slotFreed()
            return
        }
        let action = state.withLock { $0.release(connection) }
        perform(action)
    }

    private func slotFreed() {
        let action = state.withLock { $0.discard() }
        perform(action)
    }

    private func perform(_ action: PoolStateMachine<RedisConnection, CheckedContinuation<Grant, any Error>>.ReturnAction) {
        switch action {
        case .none: break
        case .close(let connection): connection.close()
        case .resume(let waiter, .connection(let connection)): waiter.resume(returning: .connection(connection))
        case .resume(let waiter, .create): waiter.resume(returning: .create)
        }
        updateGauges()
    }

    private func updateGauges() {
        let (inUse, waiting) = poolStatus
        inUseGauge.record(inUse)
        waitersGauge.record(waiting)
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
