import Crypto
import Foundation
import Logging
import Synchronization

/// Verifies fal's Ed25519 webhook signatures over the raw body.
///
/// Message: UTF-8 of `request_id + "\n" + user_id + "\n" + timestamp + "\n" +
/// lowercase_hex(sha256(body))`, header values as received. Keys come from a JWKS URL through
/// the `HTTPTransport`, are cached up to `keyCacheLifetime`, and are refetched when no cached
/// key verifies — at most once per `minimumRefetchInterval`, whatever the traffic.
public actor FalWebhookVerifier {
    public nonisolated let configuration: FalWebhookVerifierConfiguration
    private let transport: any HTTPTransport
    private let logger: Logger
    private nonisolated let now: @Sendable () -> Date

    /// The keys and when they were fetched. Read by every webhook without entering the actor (an
    /// actor hop per webhook serialised the verifications and moved their tasks between threads);
    /// written only by `fetchKeys`, on the actor.
    private nonisolated let cache = Mutex<(keys: [Curve25519.Signing.PublicKey], fetchedAt: Date?)>(([], nil))
    private var lastFetchAttempt: Date?
    private var inFlight: Task<Void, Never>?
    /// Fetches performed (successful or not); for tests and metrics.
    public private(set) var fetchCount = 0

    public init(
        configuration: FalWebhookVerifierConfiguration = FalWebhookVerifierConfiguration(),
        transport: any HTTPTransport = URLSessionTransport(),
        logger: Logger = Logger(label: "fal.webhook"),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.configuration = configuration
        self.transport = transport
        self.logger = logger
        self.now = now
    }

    /// Verifies a webhook; returns the headers it verified. Throws `FalWebhookVerificationError`.
    /// The checks and the signature run outside the actor (concurrently for many webhooks); only
    /// reading and refreshing the key cache is isolated.
    @discardableResult
    public nonisolated func verify(headers: FalWebhookHeaders, body: [UInt8]) async throws(FalWebhookVerificationError) -> FalWebhookHeaders {
        guard let requestID = headers.requestID, !requestID.isEmpty else { throw missing(FalWebhookHeaders.requestIDName) }
        guard let userID = headers.userID, !userID.isEmpty else { throw missing(FalWebhookHeaders.userIDName) }
        guard let timestamp = headers.timestamp, !timestamp.isEmpty else { throw missing(FalWebhookHeaders.timestampName) }
        guard let signatureHex = headers.signature, !signatureHex.isEmpty else { throw missing(FalWebhookHeaders.signatureName) }

        if let pinned = configuration.pinnedUserID, pinned != userID {
            throw FalWebhookVerificationError(.foreignUser, "user id is not the configured fal account")
        }
        guard let seconds = Self.unixSeconds(timestamp) else {
            throw FalWebhookVerificationError(.malformedTimestamp, "invalid timestamp: not Unix seconds in ASCII digits")
        }
        let skew = abs(now().timeIntervalSince1970 - Double(seconds))
        guard skew <= configuration.timestampTolerance.seconds else {
            let shown = Int64(exactly: skew.rounded(.down)).map(String.init) ?? "\(skew)"
            throw FalWebhookVerificationError(.staleTimestamp, "timestamp is \(shown) s from now")
        }
        guard let signature = Self.hexDecoded(signatureHex), signature.count == 64 else {
            throw FalWebhookVerificationError(.malformedSignature, "signature is not hex of 64 bytes")
        }
        let message = Self.message(requestID: requestID, userID: userID, timestamp: timestamp, body: body)

        let cached = cachedFreshKeys()
        if let cached, Self.verifies(signature, message, with: cached) { return headers }
        if cached == nil, Self.verifies(signature, message, with: await freshKeys()) { return headers }
        if await refetch(), Self.verifies(signature, message, with: await freshKeys()) { return headers }
        if await freshKeys().isEmpty {
            throw FalWebhookVerificationError(.keysUnavailable, "no webhook keys could be fetched")
        }
        throw FalWebhookVerificationError(.badSignature, "no known key verifies the signature")
    }

    /// The cached keys while fresh, fetching them first when the cache is empty or stale.
    private func freshKeys() async -> [Curve25519.Signing.PublicKey] {
        if let keys = cachedFreshKeys() { return keys }
        await refetch()
        return cachedFreshKeys() ?? []
    }

    /// The cached keys, when there are some and they are younger than `keyCacheLifetime`.
    private nonisolated func cachedFreshKeys() -> [Curve25519.Signing.PublicKey]? {
        let (keys, fetchedAt) = cache.withLock { ($0.keys, $0.fetchedAt) }
        guard let fetchedAt, !keys.isEmpty, now().timeIntervalSince(fetchedAt) < configuration.keyCacheLifetime.seconds else { return nil }
        return keys
    }

    private static func verifies(_ signature: Data, _ message: [UInt8], with keys: [Curve25519.Signing.PublicKey]) -> Bool {
        keys.contains { $0.isValidSignature(signature, for: message) }
    }

    /// Verifies with headers read through a case-insensitive lookup.
    @discardableResult
    public nonisolated func verify(body: [UInt8], header: (String) -> String?) async throws(FalWebhookVerificationError) -> FalWebhookHeaders {
        try await verify(headers: FalWebhookHeaders(header), body: body)
    }

    /// The signed message for these header values and body.
    public static func message(requestID: String, userID: String, timestamp: String, body: [UInt8]) -> [UInt8] {
        var message: [UInt8] = []
        message.reserveCapacity(requestID.utf8.count + userID.utf8.count + timestamp.utf8.count + 3 + 64)
        message += requestID.utf8
        message.append(UInt8(ascii: "\n"))
        message += userID.utf8
        message.append(UInt8(ascii: "\n"))
        message += timestamp.utf8
        message.append(UInt8(ascii: "\n"))
        for byte in SHA256.hash(data: body) {
            message.append(hexDigits[Int(byte >> 4)])
            message.append(hexDigits[Int(byte & 0x0f)])
        }
        return message
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Fetches the JWKS unless a fetch happened within the minimum interval; concurrent callers
    /// share one fetch. Returns whether a fetch ran (or was joined).
    @discardableResult
    private func refetch() async -> Bool {
        if let inFlight {
            await inFlight.value
            return true
        }
        if let lastFetchAttempt, now().timeIntervalSince(lastFetchAttempt) < configuration.minimumRefetchInterval.seconds {
            return false
        }
        lastFetchAttempt = now()
        let task = Task { await self.fetchKeys() }
        inFlight = task
        await task.value
        inFlight = nil
        return true
    }

    private func fetchKeys() async {
        fetchCount += 1
        guard let url = URL(string: configuration.jwksURL) else {
            logger.error("fal webhook JWKS URL is invalid")
            return
        }
        let request = HTTPTransportRequest(method: "GET", url: url, headers: ["Accept": "application/json"])
        do {
            let response = try await transport.send(request, timeout: configuration.fetchTimeout)
            guard response.isSuccess else {
                logger.warning("fal webhook JWKS fetch failed", metadata: ["http_status": "\(response.status)"])
                return
            }
            let fetched = FalJWKS.keys(from: response.body)
            guard !fetched.isEmpty else {
                logger.warning("fal webhook JWKS has no Ed25519 keys")
                return
            }
            let fetchedAt = now()
            cache.withLock { $0 = (fetched, fetchedAt) }
            logger.debug("fal webhook keys fetched", metadata: ["key_count": "\(fetched.count)"])
        } catch {
            logger.warning("fal webhook JWKS fetch failed", metadata: ["error": "\(error.code)"])
        }
    }

    /// Longest timestamp accepted: 12 digits reach the year 33658 and keep every value exact
    /// in a `Double`; fal sends 10.
    public static let maxTimestampDigits = 12

    /// The header's value as whole Unix seconds: only 1 to `maxTimestampDigits` ASCII digits
    /// (fal sends integer seconds). Signs, fractions, exponents (`1e300`), `nan`, `inf`, spaces
    /// and non-ASCII digits (`１２３`) are nil, so no later arithmetic meets an unchecked value.
    static func unixSeconds(_ text: String) -> Int64? {
        let utf8 = text.utf8
        guard (1...maxTimestampDigits).contains(utf8.count),
              utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        return Int64(text)
    }

    private nonisolated func missing(_ name: String) -> FalWebhookVerificationError {
        FalWebhookVerificationError(.missingHeader, "missing header \(name)")
    }

    static func hexDecoded(_ text: String) -> Data? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var data = Data(capacity: utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            data.append(high << 4 | low)
            index += 2
        }
        return data
    }

    private static func nibble(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
