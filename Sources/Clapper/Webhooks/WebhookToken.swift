import Crypto

/// The token in the webhook URL Clapper hands fal: lowercase hex HMAC-SHA256 over `"<jobId>:<task>"`
/// with `CLAPPER_WEBHOOK_SECRET`. It binds a webhook to its job and task, so a webhook that
/// arrives before the submit response was stored still lands on the right task, and a made-up
/// URL is rejected. (Task names contain no `:`, so the message is unambiguous.)
public struct WebhookToken: Sendable {
    private let key: SymmetricKey

    public init(secret: String) {
        self.key = SymmetricKey(data: Array(secret.utf8))
    }

    public func make(jobID: String, kind: TaskKind) -> String {
        Hex.encode(HMAC<SHA256>.authenticationCode(for: Self.message(jobID: jobID, kind: kind), using: key))
    }

    /// Constant-time check of `token` (hex, either case) for this job and task.
    public func verify(token: String, jobID: String, kind: TaskKind) -> Bool {
        guard token.utf8.count == SHA256.byteCount * 2, let mac = Hex.decode(token) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Self.message(jobID: jobID, kind: kind), using: key)
    }

    private static func message(jobID: String, kind: TaskKind) -> [UInt8] {
        Array("\(jobID):\(kind.rawValue)".utf8)
    }
}
