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
