/// Settings of a `FalWebhookVerifier`.
public struct FalWebhookVerifierConfiguration: Sendable, Hashable {
    /// Where fal publishes its webhook keys (JWKS). fal's newer code uses
    /// `https://rest.fal.ai/.well-known/jwks.json`, older docs `https://rest.alpha.fal.ai/…`.
    public var jwksURL: String
    /// Reject a timestamp further than this from now.
    public var timestampTolerance: Duration
    /// Keys are used at most this long after they were fetched.
    public var keyCacheLifetime: Duration
    /// At most one JWKS fetch per this interval, so junk requests cannot drive outbound fetches.
    public var minimumRefetchInterval: Duration
    public var fetchTimeout: Duration
    /// When set, only webhooks whose `X-Fal-Webhook-User-Id` equals it are accepted.
    public var pinnedUserID: String?

    public init(
        jwksURL: String = "https://rest.fal.ai/.well-known/jwks.json",
        timestampTolerance: Duration = .seconds(300),
        keyCacheLifetime: Duration = .seconds(24 * 3600),
        minimumRefetchInterval: Duration = .seconds(60),
        fetchTimeout: Duration = .seconds(10),
        pinnedUserID: String? = nil
    ) {
        self.jwksURL = jwksURL
        self.timestampTolerance = timestampTolerance
        self.keyCacheLifetime = keyCacheLifetime
        self.minimumRefetchInterval = minimumRefetchInterval
        self.fetchTimeout = fetchTimeout
        self.pinnedUserID = pinnedUserID
    }
}
