/// The signature headers of a fal webhook, values as received.
public struct FalWebhookHeaders: Sendable, Hashable {
    public static let requestIDName = "X-Fal-Webhook-Request-Id"
    public static let userIDName = "X-Fal-Webhook-User-Id"
    public static let timestampName = "X-Fal-Webhook-Timestamp"
    public static let signatureName = "X-Fal-Webhook-Signature"

    public var requestID: String?
    public var userID: String?
    public var timestamp: String?
    public var signature: String?

    public init(requestID: String?, userID: String?, timestamp: String?, signature: String?) {
        self.requestID = requestID
        self.userID = userID
        self.timestamp = timestamp
        self.signature = signature
    }

    /// Reads the four headers through a lookup by name (case-insensitive in the caller's type).
    public init(_ lookup: (String) -> String?) {
        self.init(
            requestID: lookup(Self.requestIDName),
            userID: lookup(Self.userIDName),
            timestamp: lookup(Self.timestampName),
            signature: lookup(Self.signatureName)
        )
    }
}
