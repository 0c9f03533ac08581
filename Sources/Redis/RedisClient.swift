import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Redis as the gateway uses it: one Redis (`redis://`) through a few pipelined connections
/// (`RedisNodeClient`), or a Redis Cluster (`redis+cluster://`) with every command routed to the
/// master of its key's slot (`RedisClusterClient`). Callers see the same calls either way.
///
/// Run it as a `Service` placed before everything that uses it: it closes its connections on
/// graceful shutdown.
public final class RedisClient: Service, Sendable {
    public let configuration: RedisConfiguration
    private let backend: Backend
    private let counters = RedisPoolCounters()

    private enum Backend: Sendable {
        case node(RedisNodeClient)
        case cluster(RedisClusterClient)
    }

    /// One event-loop thread for the Redis connections of every client in the process that is not
    /// given a group (like NIO's singleton, never shut down): where callers run on Swift's own
    /// pool they hop to a loop either way, and a loop of Redis's own is not held up by HTTP work.
    /// Where NIO's loops are Swift Concurrency's executor (the `clapper` binary), pass
    /// `MultiThreadedEventLoopGroup.singleton`: with a connection on each loop, a caller's command
    /// goes out on its own loop's connection and its reply resumes it there, with no thread hop.
    public static let sharedEventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    public init(
        configuration: RedisConfiguration,
        logger: Logger = Logger(label: "redis"),
        eventLoopGroup: any EventLoopGroup = RedisClient.sharedEventLoopGroup
    ) {
        self.configuration = configuration
        if configuration.url.isCluster {
            backend = .cluster(RedisClusterClient(configuration: configuration, counters: counters, logger: logger, eventLoopGroup: eventLoopGroup))
        } else {
            backend = .node(RedisNodeClient(configuration: configuration, counters: counters, logger: logger, eventLoopGroup: eventLoopGroup))
        }
    }

    public var isCluster: Bool {
        if case .cluster = backend { return true }
        return false
    }

    public func run() async throws {
        if case .cluster(let cluster) = backend {
            let interval = configuration.clusterTopologyRefresh
            try? await cancelWhenGracefulShutdown {
                while true {
                    try await Task.sleep(for: interval)
                    _ = try? await cluster.refresh()
                }
            }
        } else {
            try? await gracefulShutdown()
        }
        await shutdown()
    }

    /// Closes the connections; later and waiting callers fail with `.shutdown`. Idempotent.
    public func shutdown() async {
        switch backend {
        case .node(let node): await node.shutdown()
        case .cluster(let cluster): await cluster.shutdown()
        }
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

    /// Sends every command in one batch (on a cluster, one batch per master). Error replies come
    /// back as `.error` values in place.
    ///
    /// A batch refused by a connection that had just closed (Redis restarted, its close not yet
    /// seen when the caller picked it) was never sent: it goes once more, on a fresh connection.
    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisValue] {
        let start = ContinuousClock.now
        defer { RedisDurations.timer(for: commands.first).record(duration: start.duration(to: .now)) }
        switch backend {
        case .node(let node): return try await node.pipeline(commands)
        case .cluster(let cluster): return try await cluster.pipeline(commands)
        }
    }

    /// Runs a script by SHA; on `NOSCRIPT` loads it and runs it again, in one round trip.
    public func eval(_ script: RedisScript, keys: [String], arguments: [any RedisArgumentConvertible]) async throws(RedisError) -> RedisValue {
        try await eval(script, keys: keys, arguments: arguments, then: []).reply
    }

    /// `eval`, with `then` sent right after it on the same connection (e.g. `WAIT`, which then
    /// waits for the script's write); their replies come back after the script's.
    public func eval(_ script: RedisScript, keys: [String], arguments: [any RedisArgumentConvertible], then: [RedisCommand]) async throws(RedisError) -> (reply: RedisValue, then: [RedisValue]) {
        let call = RedisCommand("EVALSHA", arguments: [script.sha1, keys.count] + keys + arguments)
        var replies = try await pipeline([call] + then)
        if case .error(let message) = replies.first, message.hasPrefix("NOSCRIPT") {
            let loaded = try await pipeline([RedisCommand("SCRIPT", "LOAD", script.source), call] + then)
            // A script Redis cannot compile says why here (the EVALSHA after it only says NOSCRIPT).
            if case .error(let message) = loaded.first { throw RedisError(.server, "SCRIPT LOAD: \(message)") }
            replies = Array(loaded.dropFirst())
        }
        let reply = replies.first ?? .null
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return (reply, Array(replies.dropFirst()))
    }

    /// Commands sent and not yet answered, and callers waiting for a connection to open.
    public var poolStatus: (inUse: Int, waiting: Int) { counters.status }

    // MARK: - Cluster

    /// Where the master serving `key` listens, by the topology last read (with the client's
    /// credentials); the single Redis's URL when not a cluster; nil when not known yet.
    public func nodeURL(forKey key: String) -> RedisURL? {
        switch backend {
        case .node: return configuration.url
        case .cluster(let cluster): return cluster.master(ofSlot: RedisClusterSlot.of(key)).map(configuration.url.node)
        }
    }

    /// Reads a cluster's topology now (a no-op for a single Redis); the masters it names.
    @discardableResult
    public func refreshTopology() async throws(RedisError) -> [RedisAddress] {
        switch backend {
        case .node: return [RedisAddress(host: configuration.url.host, port: configuration.url.port)]
        case .cluster(let cluster): return try await cluster.refresh().masters
        }
    }

    /// Asks for the topology to be read again soon (someone lost a node); no-op for a single Redis.
    public func topologyMayHaveChanged() {
        if case .cluster(let cluster) = backend { cluster.topologyMayHaveChanged() }
    }
}
