import Foundation

/// `redis://[[user]:password@]host[:port][/db]`.
public struct RedisURL: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var database: Int

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
        return "redis://\(auth)\(host):\(port)/\(database)"
    }
}
