import Foundation

/// `redis://[[user]:password@]host[:port][/db]`, or a Redis Cluster by some of its nodes:
/// `redis+cluster://[[user]:password@]host:port[,host:port…]` (the first node is `host`/`port`).
public struct RedisURL: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var database: Int
    /// The nodes to learn a cluster's topology from; empty for a single Redis.
    public var clusterSeeds: [RedisAddress] = []

    public var isCluster: Bool { !clusterSeeds.isEmpty }

    /// This URL pointed at one node (of a cluster): same credentials, no seeds.
    public func node(_ address: RedisAddress) -> RedisURL {
        RedisURL(host: address.host, port: address.port, username: username, password: password, database: database)
    }

    public init(host: String = "127.0.0.1", port: Int = 6379, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// AUTH and SELECT as this URL asks, to send first on every new connection.
    var handshake: [RedisCommand] {
        var commands: [RedisCommand] = []
        if let password {
            commands.append(username.map { RedisCommand("AUTH", $0, password) } ?? RedisCommand("AUTH", password))
        }
        if database != 0 {
            commands.append(RedisCommand("SELECT", database))
        }
        return commands
    }

    public init(_ string: String) throws(RedisError) {
        let clusterScheme = "redis+cluster://"
        guard string.hasPrefix(clusterScheme) else {
            try self.init(single: string)
            return
        }
        // `user:pass@h1:p1,h2:p2/…`: the seeds are the part after the last `@`, before any `/`.
        let rest = string.dropFirst(clusterScheme.count)
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let hostsStart = authority.lastIndex(of: "@").map { authority.index(after: $0) } ?? authority.startIndex
        let userInfo = authority[authority.startIndex..<hostsStart]
        var seeds: [RedisAddress] = []
        for part in authority[hostsStart...].split(separator: ",", omittingEmptySubsequences: false) {
            let node = try RedisURL(single: "redis://\(part)")
            seeds.append(RedisAddress(host: node.host, port: node.port))
        }
        try self.init(single: "redis://\(userInfo)\(seeds.first.map(\.description) ?? "")\(rest[authorityEnd...])")
        guard database == 0 else { throw RedisError(.invalidURL, "a Redis Cluster has only database 0") }
        clusterSeeds = seeds
    }

    private init(single string: String) throws(RedisError) {
        guard let components = URLComponents(string: string), components.scheme == "redis" else {
            throw RedisError(.invalidURL, "expected redis://[:password@]host:port/db")
        }
        guard let host = components.host, !host.isEmpty else {
            throw RedisError(.invalidURL, "missing host")
        }
        self.host = host
        self.port = components.port ?? 6379
        guard (1...65535).contains(port) else { throw RedisError(.invalidURL, "port out of range") }
        let user = components.percentEncodedUser.flatMap { $0.removingPercentEncoding }
        self.username = (user?.isEmpty ?? true) ? nil : user
        self.password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        let path = components.path.drop(while: { $0 == "/" })
        if path.isEmpty {
            self.database = 0
        } else if let db = Int(path), db >= 0 {
            self.database = db
        } else {
            throw RedisError(.invalidURL, "database must be a non-negative number")
        }
    }

    /// The URL without its password, safe to log.
    public var description: String {
        let auth = password == nil ? "" : "\(username ?? ""):***@"
        if isCluster {
            return "redis+cluster://\(auth)\(clusterSeeds.map(\.description).joined(separator: ","))"
        }
        return "redis://\(auth)\(host):\(port)/\(database)"
    }
}
