public import Crypto

/// How a `FalSim` behaves. Every field has a default suited to tests.
public struct FalSimConfiguration: Sendable {
    /// Interface to bind.
    public var host: String
    /// Port to bind; 0 picks a free port (read it back from `FalSim.baseURL`).
    public var port: Int
    /// Base URL put in the URLs fal-sim returns (`status_url`, media URLs…); nil = its own address.
    public var publicURL: String?
    /// The key required as `Authorization: Key <key>`; nil accepts any request. A secret.
    public var key: String?
    /// The fal user id sent in `X-Fal-Webhook-User-Id`.
    public var userID: String
    /// Minimum time a request stays IN_QUEUE.
    public var queueDelay: Duration
    /// Time a request stays IN_PROGRESS.
    public var runDelay: Duration
    /// Maximum requests IN_PROGRESS at once; nil = unlimited. Others stay queued.
    public var concurrency: Int?
    /// Scale applied to fal's webhook retry schedule (10 tries over about 2 hours); 1 = real.
    public var webhookRetryScale: Double
    /// Timeout of one webhook delivery attempt.
    public var webhookTimeout: Duration
    /// Interval between SSE comments on the status stream.
    public var statusStreamHeartbeat: Duration
    /// How long a result stays readable after completion (fal: 1 hour).
    public var resultRetention: Duration
    /// Retention of results of `largeResultThreshold` bytes or more (fal: 6 minutes).
    public var largeResultRetention: Duration
    /// Size from which `largeResultRetention` applies (fal: 10 KB).
    public var largeResultThreshold: Int
    /// How long `submit-stall` and `status-stall` hold the answer back.
    public var stallDuration: Duration
    /// Faults applied to every request (see `FalSimFaults` for the names).
    public var faults: [String]
    /// A seeded fault plan drawing each request's faults (see `FalSimChaosPlan`); nil = none.
    public var chaos: FalSimChaosPlan?
    /// The Ed25519 key webhooks are signed with; nil = a fresh key per instance.
    public var signingKey: Curve25519.Signing.PrivateKey?
    /// The `kid` of the key in the JWKS.
    public var keyID: String

    public init(
        host: String = "127.0.0.1",
        port: Int = 0,
        publicURL: String? = nil,
        key: String? = "sim-key:sim-secret",
        userID: String = "sim-user",
        queueDelay: Duration = .milliseconds(20),
        runDelay: Duration = .milliseconds(50),
        concurrency: Int? = nil,
        webhookRetryScale: Double = 1.0,
        webhookTimeout: Duration = .seconds(15),
        statusStreamHeartbeat: Duration = .seconds(15),
        resultRetention: Duration = .seconds(3600),
        largeResultRetention: Duration = .seconds(360),
        largeResultThreshold: Int = 10 * 1024,
        stallDuration: Duration = .seconds(300),
        faults: [String] = [],
        chaos: FalSimChaosPlan? = nil,
        signingKey: Curve25519.Signing.PrivateKey? = nil,
        keyID: String = "fal-sim-1"
    ) {
        self.host = host
        self.port = port
        self.publicURL = publicURL
        self.key = key
        self.userID = userID
        self.queueDelay = queueDelay
        self.runDelay = runDelay
        self.concurrency = concurrency
        self.webhookRetryScale = webhookRetryScale
        self.webhookTimeout = webhookTimeout
        self.statusStreamHeartbeat = statusStreamHeartbeat
        self.resultRetention = resultRetention
        self.largeResultRetention = largeResultRetention
        self.largeResultThreshold = largeResultThreshold
        self.stallDuration = stallDuration
        self.faults = faults
        self.chaos = chaos
        self.signingKey = signingKey
        self.keyID = keyID
    }
}
