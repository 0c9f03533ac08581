/// Why a webhook signature was rejected.
public struct FalWebhookVerificationError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case missingHeader, malformedSignature, malformedTimestamp, staleTimestamp, foreignUser, badSignature, keysUnavailable
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// One of the four `X-Fal-Webhook-*` headers is absent or empty.
        public static let missingHeader = Code(.missingHeader)
        /// The signature is not hex of 64 bytes.
        public static let malformedSignature = Code(.malformedSignature)
        /// The timestamp is not a number of Unix seconds.
        public static let malformedTimestamp = Code(.malformedTimestamp)
        /// The timestamp is further from now than the tolerance.
        public static let staleTimestamp = Code(.staleTimestamp)
        /// The user id is not the pinned fal account.
        public static let foreignUser = Code(.foreignUser)
        /// No known key verifies the signature.
        public static let badSignature = Code(.badSignature)
        /// No keys could be had from the JWKS URL.
        public static let keysUnavailable = Code(.keysUnavailable)

        public var description: String { base.rawValue }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "fal webhook \(code): \(message)" }
}
