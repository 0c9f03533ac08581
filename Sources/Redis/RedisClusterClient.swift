import Logging
import NIOCore
import Synchronization

/// Redis Cluster behind one client: commands go to the master that serves their key's slot
/// (`RedisClusterSlot`), by a topology read with `CLUSTER SLOTS`; `MOVED` and `ASK` replies are
/// followed (at most `maxRedirects` times a command) and a `MOVED`, an unreachable node or a
/// failover makes the topology be read again (one read at a time, shared by every caller).
///
/// A pipeline may hold keys of many slots: it is split by master, the parts go out at once and
/// the replies come back in the caller's order. A command without a key (SCRIPT LOAD, WAIT) goes
/// with the keyed command before it (`EVALSHA` + `WAIT`), or the first one when none is before it
/// (`SCRIPT LOAD` + `EVALSHA`), and is sent again with it when that one is redirected.
final class RedisClusterClient: Sendable {
    let configuration: RedisConfiguration
    private let counters: RedisPoolCounters
    private let logger: Logger
    private let eventLoopGroup: any EventLoopGroup
    private let state = Mutex(State())

    static let maxRedirects = 5
    /// Tries for a part whose node refused the connection (nothing was sent), a topology read
    /// between each: covers a master's failover (`cluster-node-timeout` plus an election).
    static let maxUnreachableTries = 6

    private struct State {
        var topology: RedisClusterTopology?
        var nodes: [RedisAddress: RedisNodeClient] = [:]
        var refreshing: Task<RedisClusterTopology, any Error>?
        var lastRefresh: ContinuousClock.Instant?
        var isShutdown = false
    }

    init(configuration: RedisConfiguration, counters: RedisPoolCounters, logger: Logger, eventLoopGroup: any EventLoopGroup) {
        self.configuration = configuration
        self.counters = counters
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
    }

    func shutdown() async {
        let (nodes, refreshing) = state.withLock { state in
            state.isShutdown = true
            return (Array(state.nodes.values), state.refreshing)
        }
        refreshing?.cancel()
        for node in nodes { await node.shutdown() }
    }

    /// The master that serves `slot` by the topology last read (nil before the first read).
    func master(ofSlot slot: Int) -> RedisAddress? {
        state.withLock { $0.topology?.master(ofSlot: slot) }
    }

    /// Reads the topology again soon, without waiting for it (a subscriber lost its node).
    func topologyMayHaveChanged() {
        Task { _ = try? await self.refresh() }
    }

    /// Sends the commands, each to the master of its slot; replies in the callers' order, error
    /// replies in place (a redirect followed is not one).
    func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisValue] {
        guard !commands.isEmpty else { return [] }
        var replies = [RedisValue](repeating: .null, count: commands.count)
        let units = Self.units(of: commands)
        var pending = units
        var tries = 0
        var answeredBy: [Int: String] = [:]  // keyed command -> host of the node that answered
        while !pending.isEmpty {
            tries += 1
            let topology = try await topology()
            var byAddress: [RedisAddress: [Unit]] = [:]
            for unit in pending {
                guard let address = unit.slot.map({ topology.master(ofSlot: $0) }) ?? topology.masters.first else {
                    refreshSoon()
                    throw RedisError(.server, "CLUSTERDOWN Hash slot not served")
                }
                byAddress[address, default: []].append(unit)
            }
            let parts = byAddress.map { (node: node($0.key), units: $0.value) }
            pending = []
            var firstError: RedisError?
            // Each part on its own child task; a child gives back its part's index and outcome.
            await withTaskGroup(of: (Int, Result<[RedisValue], RedisError>).self) { group in
                for (index, part) in parts.enumerated() {
                    let batch = part.units.flatMap { $0.indices.map { commands[$0] } }
                    group.addTask { (index, await Self.send(batch, to: part.node)) }
                }
                for await (index, result) in group {
                    let units = parts[index].units
                    switch result {
                    case .success(let values):
                        var next = values.makeIterator()
                        for unit in units {
                            answeredBy[unit.keyed] = parts[index].node.configuration.url.host
                            for index in unit.indices { replies[index] = next.next() ?? .null }
                        }
                    case .failure(let error) where error.code == .connectionFailed && tries < Self.maxUnreachableTries:
                        // Never sent: the node is down or gone. Route again after a fresh read.
                        pending += units
                    case .failure(let error):
                        firstError = firstError ?? error
                    }
                }
            }
            if let firstError { throw firstError }
            if !pending.isEmpty {
                _ = try? await refresh()
                try? await Task.sleep(for: .milliseconds(50 << min(tries, 5)))
            }
        }
        for unit in units {
            if let redirect = Redirect(replies[unit.keyed], answeredBy: answeredBy[unit.keyed] ?? "") {
                try await follow(redirect, unit: unit, commands: commands, into: &replies)
            }
        }
        return replies
    }

    private static func send(_ batch: [RedisCommand], to node: RedisNodeClient) async -> Result<[RedisValue], RedisError> {
        do {
            return .success(try await node.pipeline(batch))
        } catch {
            return .failure(error)
        }
    }

    // MARK: - Redirects

    private struct Redirect {
        var ask: Bool
        var address: RedisAddress

        /// `MOVED <slot> <host>:<port>` or `ASK <slot> <host>:<port>`; an empty host means the
        /// host of the node that answered (`answeredBy`).
        init?(_ reply: RedisValue, answeredBy: String) {
            guard case .error(let message) = reply else { return nil }
            let words = message.split(separator: " ")
            guard words.count == 3, words[0] == "MOVED" || words[0] == "ASK",
                  let address = RedisAddress(redirect: words[2], fallbackHost: answeredBy)
            else { return nil }
            self.ask = words[0] == "ASK"
            self.address = address
        }
    }

    private func follow(_ first: Redirect, unit: Unit, commands: [RedisCommand], into replies: inout [RedisValue]) async throws(RedisError) {
        var redirect = first
        for _ in 0..<Self.maxRedirects {
            if !redirect.ask { refreshSoon() }
            var batch = unit.indices.map { commands[$0] }
            if redirect.ask { batch.insert(RedisCommand("ASKING"), at: 0) }
            var values = try await node(redirect.address).pipeline(batch)
            if redirect.ask { values = Array(values.dropFirst()) }
            for (index, value) in zip(unit.indices, values) { replies[index] = value }
            guard let next = Redirect(replies[unit.keyed], answeredBy: redirect.address.host) else { return }
            redirect = next
        }
        throw RedisError(.server, "TRYAGAIN too many cluster redirects")
    }

    // MARK: - Units

    /// One keyed command with the keyless commands that travel with it.
    struct Unit {
        var indices: [Int]
        /// The index of the keyed command (the first index when none has a key).
        var keyed: Int
        var slot: Int?
    }

    static func units(of commands: [RedisCommand]) -> [Unit] {
        var units: [Unit] = []
        var leading: [Int] = []
        for (index, command) in commands.enumerated() {
            if let slot = RedisClusterSlot.of(command) {
                units.append(Unit(indices: leading + [index], keyed: index, slot: slot))
                leading = []
            } else if units.isEmpty {
                leading.append(index)
            } else {
                units[units.count - 1].indices.append(index)
            }
        }
        if !leading.isEmpty {
            units.append(Unit(indices: leading, keyed: leading[0], slot: nil))
        }
        return units
    }

    // MARK: - Topology and nodes

    private func node(_ address: RedisAddress) -> RedisNodeClient {
        state.withLock { state in
            if let node = state.nodes[address] { return node }
            var configuration = self.configuration
            configuration.url = configuration.url.node(address)
            let node = RedisNodeClient(configuration: configuration, counters: counters, logger: logger, eventLoopGroup: eventLoopGroup)
            state.nodes[address] = node
            return node
        }
    }

    private func topology() async throws(RedisError) -> RedisClusterTopology {
        if let topology = state.withLock({ $0.topology }) { return topology }
        return try await refresh()
    }

    private func refreshSoon() {
        let recent = state.withLock { state in
            state.lastRefresh.map { ContinuousClock.now - $0 < .milliseconds(100) } ?? false
        }
        if !recent { topologyMayHaveChanged() }
    }

    /// Reads the topology from the masters known, then the seeds; one read at a time.
    @discardableResult
    func refresh() async throws(RedisError) -> RedisClusterTopology {
        let task: Task<RedisClusterTopology, any Error> = try state.withLock { (state) throws(RedisError) in
            if state.isShutdown { throw RedisError(.shutdown, "Redis client is shut down") }
            if let running = state.refreshing { return running }
            let candidates = (state.topology?.masters ?? []) + configuration.url.clusterSeeds
            let task = Task { try await self.readTopology(from: candidates) }
            state.refreshing = task
            return task
        }
        let result = await task.result
        state.withLock { state in
            if state.refreshing == task { state.refreshing = nil }
        }
        switch result {
        case .success(let topology): return topology
        case .failure(let error): throw error as? RedisError ?? RedisError(.connectionFailed, "\(error)")
        }
    }

    private func readTopology(from candidates: [RedisAddress]) async throws -> RedisClusterTopology {
        var seen = Set<RedisAddress>()
        var lastError = RedisError(.connectionFailed, "no cluster node to ask")
        for address in candidates where seen.insert(address).inserted {
            do {
                let reply = try await node(address).pipeline([RedisCommand("CLUSTER", "SLOTS")]).first ?? .null
                if case .error(let message) = reply { throw RedisError(.server, message) }
                guard let topology = RedisClusterTopology(clusterSlots: reply, askedHost: address.host), !topology.masters.isEmpty else {
                    throw RedisError(.protocolError, "unreadable CLUSTER SLOTS reply from \(address)")
                }
                let changed = state.withLock { state in
                    let changed = state.topology != nil && state.topology != topology
                    state.topology = topology
                    state.lastRefresh = .now
                    return changed
                }
                if changed {
                    logger.notice("Redis Cluster topology changed", metadata: ["masters": "\(topology.masters.map(\.description).joined(separator: ","))"])
                }
                return topology
            } catch let error as RedisError {
                lastError = error
            }
        }
        throw lastError
    }
}
