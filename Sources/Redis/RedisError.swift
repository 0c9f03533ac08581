/// An error from the Redis layer: a failed connection, a timeout, an exhausted pool,
/// or an error reply from the server (its message is kept).
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case connectionFailed, connectionClosed, timeout, server, poolTimeout, invalidURL, shutdown, protocolError
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Could not connect (refused, unreachable, AUTH or SELECT rejected).
        public static let connectionFailed = Code(.connectionFailed)
        /// The connection broke during a command.
        public static let connectionClosed = Code(.connectionClosed)
        /// The command timeout passed without a reply.
        public static let timeout = Code(.timeout)
        /// Redis answered with an error reply.
        public static let server = Code(.server)
        /// Every pooled connection stayed busy until the caller's deadline.
        public static let poolTimeout = Code(.poolTimeout)
        /// A `redis://` URL could not be parsed.
        public static let invalidURL = Code(.invalidURL)
        /// The client is shut down.
        public static let shutdown = Code(.shutdown)
        /// A reply of an unexpected shape.
        public static let protocolError = Code(.protocolError)

        public var description: String { base.rawValue }
    }

    public let code: Code
    /// For `.server`, Redis's own message (e.g. `NOSCRIPT No matching script`).
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "Redis \(code): \(message)" }
}

extension RedisError {
    /// A failure that passes on its own: a busy pool, a broken or timed-out connection (a write
    /// whose reply was lost may have landed), or a server that is not serving yet or just now
    /// (`LOADING` while it reads its data after a restart, `BUSY` scripts, `TRYAGAIN`,
    /// `MASTERDOWN`, `CLUSTERDOWN`). Callers retry it from a fresh read; anything else is final.
    public var isTransient: Bool {
        switch code {
        case .poolTimeout, .connectionFailed, .connectionClosed, .timeout:
            return true
        case .server:
            return Self.transientReplies.contains { message.hasPrefix($0) }
        default:
            return false
        }
    }

    private static let transientReplies = ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"]
}
