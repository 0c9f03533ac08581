import Crypto
import Foundation

/// Short-lived signed tokens for event streams, carried in the query string (`?token=`) because
/// a browser's `EventSource` cannot send an `Authorization` header.
///
/// A token is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))` with the payload
/// `v1|<scope>|<expiry unix seconds>|<user id>`, scope `job:<jobId>` (that one job's stream) or
/// `user` (the user's all-jobs stream). The key is derived from `CLAPPER_WEBHOOK_SECRET` with a
/// label of its own, so an event token is never a valid webhook token. The MAC is checked in
/// constant time.
public struct EventTokenSigner: Sendable {
    /// What a token opens.
    public enum Scope: Sendable, Hashable {
        case job(String)
        case user
    }

    public struct Claims: Sendable, Hashable {
        public var scope: Scope
        public var userID: String
        public var expires: Date
    }

    private let key: SymmetricKey
    /// How long a token made now stays valid (checked when a stream opens).
    public let lifetime: TimeInterval

    /// - Parameters:
    ///   - secret: `CLAPPER_WEBHOOK_SECRET`; a separate key is derived from it.
    ///   - lifetime: validity of new tokens (1 hour: a job's stream, reconnects included, fits).
    public init(secret: String, lifetime: TimeInterval = 3600) {
        let derived = HMAC<SHA256>.authenticationCode(for: Array("clapper event token v1".utf8), using: SymmetricKey(data: Array(secret.utf8)))
        self.key = SymmetricKey(data: Array(derived))
        self.lifetime = lifetime
    }

    public func token(scope: Scope, userID: String, now: Date) -> String {
        let expiry = Int64((now.timeIntervalSince1970 + lifetime).rounded(.down))
        let scopeText: String
        switch scope {
        case .job(let id): scopeText = "job:" + id
        case .user: scopeText = "user"
        }
        let payload = Array("v1|\(scopeText)|\(expiry)|\(userID)".utf8)
        let mac = HMAC<SHA256>.authenticationCode(for: payload, using: key)
        return Base64URL.encode(payload) + "." + Base64URL.encode(Array(mac))
    }

    /// The claims of a well-formed, authentic, unexpired token; nil otherwise.
    public func verify(_ token: String, now: Date) -> Claims? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard token.utf8.count <= 4096, parts.count == 2,
              let payload = Base64URL.decode(parts[0]), let mac = Base64URL.decode(parts[1]),
              HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: payload, using: key)
        else { return nil }
        let fields = String(decoding: payload, as: UTF8.self).split(separator: "|", maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count == 4, fields[0] == "v1", let expiry = Int64(fields[2]), !fields[3].isEmpty else { return nil }
        let scope: Scope
        if fields[1] == "user" {
            scope = .user
        } else if fields[1].hasPrefix("job:"), fields[1].count > 4 {
            scope = .job(String(fields[1].dropFirst(4)))
        } else {
            return nil
        }
        let expires = Date(timeIntervalSince1970: TimeInterval(expiry))
        guard now < expires else { return nil }
        return Claims(scope: scope, userID: String(fields[3]), expires: expires)
    }

    /// `<base>/v1/jobs/<jobId>/events?token=…`: the `eventsUrl` of the job-creation answer.
    public func eventsURL(base: String, jobID: String, userID: String, now: Date) -> String {
        let base = base.hasSuffix("/") ? String(base.dropLast()) : base
        return "\(base)/v1/jobs/\(Self.pathSegment(jobID))/events?token=\(token(scope: .job(jobID), userID: userID, now: now))"
    }

    /// `<base>/v1/events?token=…`: the stream of all the user's jobs.
    public func userEventsURL(base: String, userID: String, now: Date) -> String {
        userEventsURL(base: base, token: token(scope: .user, userID: userID, now: now))
    }

    /// `<base>/v1/events?token=<token>`.
    public func userEventsURL(base: String, token: String) -> String {
        let base = base.hasSuffix("/") ? String(base.dropLast()) : base
        return "\(base)/v1/events?token=\(token)"
    }

    static func pathSegment(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}
