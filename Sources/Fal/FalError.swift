/// A failed fal queue call.
///
/// `code` says what kind of failure it was; `mayHaveReachedFal` says whether fal may have
/// received the request (for a submit: whether a job may exist). Messages never contain the key.
public struct FalError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case unauthorized, rateLimited, validation, notFound, unavailable, timeout,
                 badResponse, modelError, invalidRequest, cancelled
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// 401 or 403: the key is missing, wrong or not allowed.
        public static let unauthorized = Code(.unauthorized)
        /// 429, after any retries.
        public static let rateLimited = Code(.rateLimited)
        /// 422: the input was rejected; `details` holds fal's `detail` list.
        public static let validation = Code(.validation)
        /// 404: unknown request, or a result past its retention.
        public static let notFound = Code(.notFound)
        /// 502, 503 or a connection failure, after any retries.
        public static let unavailable = Code(.unavailable)
        /// The call's deadline passed, or 504 (including the caller's own start timeout,
        /// `X-Fal-Request-Timeout-Type: user`).
        public static let timeout = Code(.timeout)
        /// A 2xx whose body could not be understood.
        public static let badResponse = Code(.badResponse)
        /// Any other 4xx or 5xx: the model's (or fal's) own error, status and body attached.
        public static let modelError = Code(.modelError)
        /// The call could not be formed (invalid URL, input not a JSON object); nothing was sent.
        public static let invalidRequest = Code(.invalidRequest)
        /// The calling task was cancelled.
        public static let cancelled = Code(.cancelled)

        public var description: String { base.rawValue }
    }

    public let code: Code
    public let message: String
    /// The HTTP status fal answered with, when there was an answer.
    public let httpStatus: Int?
    /// `error_type` from the body, or the `X-Fal-Error-Type` header.
    public let errorType: String?
    /// The response body exactly as received (empty without a response).
    public let body: [UInt8]
    /// For `.validation`: the decoded `detail` entries.
    public let details: [FalValidationDetail]
    /// False only when fal surely did not receive the request.
    public let mayHaveReachedFal: Bool
    /// True when the 504 was the caller's own start timeout (`X-Fal-Request-Timeout-Type: user`).
    public let isUserTimeout: Bool

    public init(
        _ code: Code,
        _ message: String,
        httpStatus: Int? = nil,
        errorType: String? = nil,
        body: [UInt8] = [],
        details: [FalValidationDetail] = [],
        mayHaveReachedFal: Bool = true,
        isUserTimeout: Bool = false
    ) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
        self.errorType = errorType
        self.body = body
        self.details = details
        self.mayHaveReachedFal = mayHaveReachedFal
        self.isUserTimeout = isUserTimeout
    }

    public var description: String {
        var text = "fal \(code)"
        if let httpStatus { text += " (HTTP \(httpStatus))" }
        if let errorType { text += " [\(errorType)]" }
        return text + ": " + message
    }
}
