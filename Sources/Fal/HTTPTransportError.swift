/// Why an HTTP exchange produced no response.
///
/// The one question the fal client must answer after a failure is whether the request may
/// have reached the server: a submit is retried only when it surely did not.
public struct HTTPTransportError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case cannotConnect, timedOut, connectionLost, invalidRequest, cancelled, other
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// No connection was made (refused, host not found, DNS failure, no network, TLS
        /// handshake failed): the request surely did not reach the server.
        public static let cannotConnect = Code(.cannotConnect)
        /// No response before the timeout; the request may have been sent.
        public static let timedOut = Code(.timedOut)
        /// The connection broke mid-exchange; the request may have been sent.
        public static let connectionLost = Code(.connectionLost)
        /// The request could not be formed (bad URL, unsupported scheme); nothing was sent.
        public static let invalidRequest = Code(.invalidRequest)
        /// The calling task was cancelled; the request may have been sent.
        public static let cancelled = Code(.cancelled)
        /// Any other failure; treated as ambiguous.
        public static let other = Code(.other)

        public var description: String { base.rawValue }
    }

    public let code: Code
    /// False only when the request surely did not reach the server.
    public let mayHaveReachedServer: Bool
    public let message: String

    public init(_ code: Code, mayHaveReachedServer: Bool, _ message: String) {
        self.code = code
        self.mayHaveReachedServer = mayHaveReachedServer
        self.message = message
    }

    public static func cannotConnect(_ message: String) -> HTTPTransportError {
        HTTPTransportError(.cannotConnect, mayHaveReachedServer: false, message)
    }

    public static func timedOut(_ message: String) -> HTTPTransportError {
        HTTPTransportError(.timedOut, mayHaveReachedServer: true, message)
    }

    public var description: String { "HTTP transport \(code): \(message)" }
}
