/// How to reach Redis and how patient to be with it.
public struct RedisConfiguration: Sendable {
    public var url: RedisURL
    /// Connections, each carrying many commands at once (pub/sub subscribers open their own).
    public var poolSize: Int
    /// How long a caller waits for a connection being opened before `poolTimeout`.
    public var poolTimeout: Duration
    public var connectTimeout: Duration
    /// How long one command (or pipeline) may wait for its reply.
    public var commandTimeout: Duration
    /// Replicas a write that must survive a failover waits for (`WAIT`), at most
    /// `writeReplicaTimeoutMilliseconds`; 0 waits for none (the caller decides what needs it).
    public var writeReplicas: Int
    public var writeReplicaTimeoutMilliseconds: Int
    /// A cluster's topology is also read this often while the client runs as a service (besides
    /// after a redirect, a refused connect or a lost subscription): masters added or slots moved
    /// are learned before a command trips over them.
    public var clusterTopologyRefresh: Duration = .seconds(30)

    public init(
        url: RedisURL = RedisURL(),
        poolSize: Int = 2,
        poolTimeout: Duration = .seconds(2),
        connectTimeout: Duration = .seconds(1),
        commandTimeout: Duration = .seconds(2),
        writeReplicas: Int = 0,
        writeReplicaTimeoutMilliseconds: Int = 200
    ) {
        self.writeReplicas = max(0, writeReplicas)
        self.writeReplicaTimeoutMilliseconds = max(1, writeReplicaTimeoutMilliseconds)
        self.url = url
        self.poolSize = max(1, poolSize)
        self.poolTimeout = poolTimeout
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
    }
}

extension Duration {
    var timeval: (seconds: Int, microseconds: Int) {
        let (seconds, attoseconds) = components
        return (Int(seconds), Int(attoseconds / 1_000_000_000_000))
    }
}
