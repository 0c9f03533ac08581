import Foundation

/// A throwaway Redis Cluster on free loopback ports: `masters × (1 + replicasPerMaster)`
/// `redis-server` processes (each a `RedisServer`, data in its own temporary folder) joined by
/// `redis-cli --cluster create`. Tests get one through `withRedisCluster`, which stops it when
/// the body returns.
///
/// The fixture talks to the nodes through `redis-cli` (not the Redis module), so it keeps
/// working whatever state the client under test is in.
public final class RedisCluster: Sendable {
    /// Every node, in the order given to `redis-cli --cluster create` (masters first).
    public let nodes: [RedisServer]
    /// The nodes' client ports, in the same order.
    public let ports: [Int]
    private let redisCLI: String

    /// Every node, as Clapper's cluster URL: `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...`.
    public var seedURLString: String {
        "redis+cluster://" + ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
    }

    public struct Missing: Error, CustomStringConvertible {
        public var description: String {
            "redis-cli was not found on PATH. Install it (apt-get install redis-server, or redis-tools) or run ops/test, which does."
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private init(nodes: [RedisServer], redisCLI: String) {
        self.nodes = nodes
        self.ports = nodes.map(\.port)
        self.redisCLI = redisCLI
    }

    /// Node settings that make the cluster form, detect a dead master and fail over quickly.
    private static func clusterArguments(busPort: Int) -> [String] {
        [
            "--cluster-enabled", "yes",
            // Relative to the node's --dir, the node's own temporary folder: unique per node.
            "--cluster-config-file", "nodes.conf",
            // A master silent for 1 s is suspected; its replica is then elected within ~1-2 s more.
            "--cluster-node-timeout", "1000",
            // A replica may take over however long its link to the master has been down.
            "--cluster-replica-validity-factor", "0",
            // The bus port is the client port + 10000 by default, which is past 65535 for ephemeral
            // ports above 55535: the bus gets a free port of its own.
            "--cluster-port", "\(busPort)",
            // Replicas copy their master at once (Redis 7 waits 5 s for more replicas by default).
            "--repl-diskless-sync-delay", "0",
        ]
    }

    /// Starts the nodes, creates the cluster and waits until every node reports all 16384 slots
    /// served (`cluster_state:ok`, `cluster_slots_ok:16384`), every node knows every replica, and
    /// every replica's link to its master is up.
    public static func start(masters: Int = 3, replicasPerMaster: Int = 1) async throws -> RedisCluster {
        guard masters >= 3 else { throw Failure(description: "redis-cli --cluster create needs at least 3 masters, not \(masters)") }
        guard replicasPerMaster >= 0 else { throw Failure(description: "replicasPerMaster must be 0 or more, not \(replicasPerMaster)") }
        guard let redisCLI = findExecutable("redis-cli") else { throw Missing() }
        var nodes: [RedisServer] = []
        do {
            for _ in 0..<(masters * (1 + replicasPerMaster)) {
                nodes.append(try await startNode())
            }
            let cluster = RedisCluster(nodes: nodes, redisCLI: redisCLI)
            let create = try await cluster.run(
                ["--cluster", "create"] + cluster.ports.map { "127.0.0.1:\($0)" }
                    + ["--cluster-replicas", "\(replicasPerMaster)", "--cluster-yes"])
            guard create.status == 0 else {
                throw Failure(description: "redis-cli --cluster create exited with \(create.status): \(create.stdout)\(create.stderr)")
            }
            try await cluster.waitUntilFormed(masters: masters, replicas: masters * replicasPerMaster)
            return cluster
        } catch {
            for node in nodes { node.stop() }
            throw error
        }
    }

    /// One cluster-enabled node; a new bus port per attempt (it was free when chosen, but may
    /// have been taken since, or be the port `RedisServer` picks for the client).
    private static func startNode() async throws -> RedisServer {
        var lastError: (any Error)?
        for _ in 0..<3 {
            do {
                return try await RedisServer.start(extraArguments: clusterArguments(busPort: try FreePort.find()))
            } catch {
                lastError = error
            }
        }
        throw lastError ?? Failure(description: "no cluster node started")
    }

    /// Kills every node (SIGKILL).
    public func stop() {
        for node in nodes { node.stop() }
    }

    /// The nodes still running (`RedisServer.stop()` forgets the process, leaving pid 0).
    private var liveNodes: [RedisServer] { nodes.filter { $0.pid != 0 } }

    // MARK: - Queries

    /// Runs `redis-cli -h 127.0.0.1 -p port -e [-c] arguments...` and returns what it printed;
    /// throws when it fails (cannot connect, or an error reply). `port` nil: the first live node.
    /// `followRedirects` (-c) follows MOVED and ASK, so a key lands on whichever master owns it.
    @discardableResult
    public func command(_ arguments: [String], port: Int? = nil, followRedirects: Bool = false) async throws -> String {
        guard let port = port ?? liveNodes.first?.port else { throw Failure(description: "no live node") }
        let result = try await run(["-h", "127.0.0.1", "-p", "\(port)", "-e"] + (followRedirects ? ["-c"] : []) + arguments)
        guard result.status == 0 else {
            throw Failure(description: "redis-cli -p \(port) \(arguments.joined(separator: " ")) exited with \(result.status): \(result.stdout)\(result.stderr)")
        }
        return result.stdout
    }

    /// Ports of the current masters (those serving at least one slot), from `CLUSTER NODES` on
    /// the first live node that answers; nodes flagged `fail` are left out.
    public func masters() async throws -> [Int] {
        try await clusterNodes().filter(\.isServingMaster).map(\.port).sorted()
    }

    /// `DBSIZE` of each current master, by port.
    public func keyCounts() async throws -> [Int: Int] {
        var counts: [Int: Int] = [:]
        for port in try await masters() {
            let reply = try await command(["DBSIZE"], port: port).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let count = Int(reply) else { throw Failure(description: "DBSIZE on \(port) answered \(reply)") }
            counts[port] = count
        }
        return counts
    }

    /// Kills (SIGKILL) the master that serves `slot` and returns its port.
    @discardableResult
    public func killMaster(owningSlot slot: Int) async throws -> Int {
        guard let owner = try await clusterNodes().first(where: { $0.isServingMaster && $0.serves(slot) }) else {
            throw Failure(description: "no live master serves slot \(slot)")
        }
        guard let node = liveNodes.first(where: { $0.port == owner.port }) else {
            throw Failure(description: "the master of slot \(slot), port \(owner.port), is not a live node of this cluster")
        }
        node.stop()
        return owner.port
    }

    /// Waits (at most 30 s) until every live node reports `slot` served by a live master other
    /// than `formerMaster`, and `cluster_state:ok`.
    public func waitForFailover(ofSlot slot: Int, formerMaster: Int) async throws {
        var last = "no answer yet"
        try await poll(for: .seconds(30), describe: { "slot \(slot) did not fail over from \(formerMaster) within 30 s: \(last)" }) {
            let live = Set(self.liveNodes.map(\.port))
            for port in live.sorted() {
                guard let info = try? await self.clusterInfo(port: port) else { last = "\(port) did not answer"; return false }
                guard info["cluster_state"] == "ok" else { last = "\(port): cluster_state:\(info["cluster_state"] ?? "?")"; return false }
                guard let view = try? await self.clusterNodes(port: port) else { last = "\(port) did not answer CLUSTER NODES"; return false }
                guard let owner = view.first(where: { $0.isServingMaster && $0.serves(slot) }) else {
                    last = "\(port) sees no master for slot \(slot)"; return false
                }
                guard owner.port != formerMaster, live.contains(owner.port) else {
                    last = "\(port) sees slot \(slot) on \(owner.port)"; return false
                }
            }
            return true
        }
    }

    // MARK: - Formation

    private func waitUntilFormed(masters: Int, replicas: Int) async throws {
        var last = "no answer yet"
        try await poll(for: .seconds(20), describe: { "the cluster did not form within 20 s: \(last)" }) {
            for port in self.ports {
                guard let info = try? await self.clusterInfo(port: port) else { last = "\(port) did not answer"; return false }
                guard info["cluster_state"] == "ok", info["cluster_slots_ok"] == "16384" else {
                    last = "\(port): cluster_state:\(info["cluster_state"] ?? "?") cluster_slots_ok:\(info["cluster_slots_ok"] ?? "?")"
                    return false
                }
                // Every node knows who replicates whom, so a failover (and `masters()`) does not
                // depend on which node is asked.
                guard let view = try? await self.clusterNodes(port: port) else { last = "\(port) did not answer CLUSTER NODES"; return false }
                let servingMasters = view.filter(\.isServingMaster).count
                let knownReplicas = view.filter { $0.flags.contains("slave") && !$0.isFailed }.count
                guard servingMasters == masters, knownReplicas == replicas else {
                    last = "\(port) sees \(servingMasters) masters and \(knownReplicas) replicas"
                    return false
                }
                // A replica that has not copied its master yet would take over with no data.
                if view.contains(where: { $0.flags.contains("myself") && $0.flags.contains("slave") }) {
                    let replication = (try? await self.command(["INFO", "replication"], port: port)) ?? ""
                    guard replication.contains("master_link_status:up") else { last = "replica \(port): link to its master not up"; return false }
                }
            }
            return true
        }
    }

    /// Calls `check` every 50 ms until it returns true; throws `describe()` after `limit`.
    private func poll(for limit: Duration, describe: () -> String, _ check: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while true {
            if try await check() { return }
            guard ContinuousClock.now < deadline else { throw Failure(description: describe()) }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    // MARK: - CLUSTER INFO / CLUSTER NODES

    private func clusterInfo(port: Int) async throws -> [String: String] {
        var fields: [String: String] = [:]
        for line in try await command(["CLUSTER", "INFO"], port: port).split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]).trimmingCharacters(in: .whitespaces) }
        }
        return fields
    }

    /// One line of `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent>
    /// <pong-recv> <config-epoch> <link-state> <slot> ...`.
    struct NodeLine {
        var id: String
        var port: Int
        var flags: Set<String>
        var slots: [ClosedRange<Int>]

        var isFailed: Bool { flags.contains("fail") || flags.contains("noaddr") }
        var isServingMaster: Bool { flags.contains("master") && !isFailed && !slots.isEmpty }
        func serves(_ slot: Int) -> Bool { slots.contains { $0.contains(slot) } }

        init?(_ line: Substring) {
            let fields = line.split(separator: " ")
            guard fields.count >= 8 else { return nil }
            let address = fields[1].split(separator: ",")[0].split(separator: "@")[0]
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else { return nil }
            id = String(fields[0])
            self.port = port
            flags = Set(fields[2].split(separator: ",").map(String.init))
            slots = fields.dropFirst(8).compactMap { field in
                // "[slot->-id]" / "[slot-<-id]": a slot being migrated or imported; not served here.
                guard !field.hasPrefix("[") else { return nil }
                let bounds = field.split(separator: "-").compactMap { Int($0) }
                switch bounds.count {
                case 1: return bounds[0]...bounds[0]
                case 2: return bounds[0]...bounds[1]
                default: return nil
                }
            }
        }
    }

    /// `CLUSTER NODES` from `port`, or from the first live node that answers.
    private func clusterNodes(port: Int? = nil) async throws -> [NodeLine] {
        var lastError: (any Error)?
        for candidate in port.map({ [$0] }) ?? liveNodes.map(\.port) {
            do {
                return try await command(["CLUSTER", "NODES"], port: candidate)
                    .split(whereSeparator: \.isNewline)
                    .compactMap(NodeLine.init)
            } catch {
                lastError = error
            }
        }
        throw lastError ?? Failure(description: "no live node")
    }

    // MARK: - Running redis-cli

    /// Runs redis-cli to its end (killed after 10 s).
    private func run(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await PackageExecutable.runToEnd(URL(fileURLWithPath: redisCLI), arguments: arguments, killAfter: .seconds(10))
    }
}

/// Runs `body` with a fresh Redis Cluster (by default 3 masters with a replica each), stopped
/// afterwards.
public func withRedisCluster<T>(
    masters: Int = 3,
    replicasPerMaster: Int = 1,
    _ body: (RedisCluster) async throws -> T
) async throws -> T {
    let cluster = try await RedisCluster.start(masters: masters, replicasPerMaster: replicasPerMaster)
    defer { cluster.stop() }
    return try await body(cluster)
}
