/// The gateway's one error shape inside (after valkey-swift's `ValkeyClientError`): a code to
/// switch on, a message written for whoever reads it, the field it is about, the error
/// underneath, and where it was raised. Nothing here knows HTTP: the edge (`ErrorMiddleware`)
/// maps the code to a status, shows the code and message, and never shows `underlying`.
public struct ClapperError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidJSON = "invalid_json"
            case invalidField = "invalid_field"
            case unknownField = "unknown_field"
            case validationFailed = "validation_failed"
            case notFound = "not_found"
            case contention
            case unavailable
            case timeout
            case cancelled
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A body that is not JSON, not an object, or has a duplicate key.
        public static let invalidJSON = Code(.invalidJSON)
        /// A field of the wrong JSON type.
        public static let invalidField = Code(.invalidField)
        /// A field the API does not know.
        public static let unknownField = Code(.unknownField)
        /// A well-formed value that breaks a rule.
        public static let validationFailed = Code(.validationFailed)
        /// No such job (or task).
        public static let notFound = Code(.notFound)
        /// Other writers kept winning the compare-and-set: try again.
        public static let contention = Code(.contention)
        /// A dependency (Redis, fal) cannot answer now.
        public static let unavailable = Code(.unavailable)
        /// A deadline passed without an answer.
        public static let timeout = Code(.timeout)
        /// The caller gave up (task cancellation, shutdown): not a timeout.
        public static let cancelled = Code(.cancelled)

        /// The code as the API shows it (`validation_failed`).
        public var description: String { base.rawValue }
    }

    public let code: Code
    public let message: String
    /// The offending field as a dotted path (`video.aspectRatio`), when there is one.
    public let field: String?
    public let underlying: (any Error & Sendable)?
    public let file: String
    public let line: Int

    public init(_ code: Code, _ message: String, field: String? = nil, underlying: (any Error & Sendable)? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.field = field
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let underlying { text += " (\(underlying))" }
        return text + " [\(file):\(line)]"
    }
}
