import ArgumentParser

/// The command-line flags of `clapper`, one per configuration key: `--http-port 9000` sets
/// `CLAPPER_HTTP_PORT`, `--fal-key` sets `FAL_KEY` (the key without `CLAPPER_`, lowercased, with
/// dashes). swift-argument-parser owns the command line (generated `--help`, unknown flags
/// refused); every value stays a string here and is judged with the environment's by
/// `ClapperConfiguration`, so a bad value names its key whichever way it came.
public struct ClapperOptions: ParsableArguments {
    public init() {}

    @Option(name: .customLong("http-host"), help: ArgumentHelp("CLAPPER_HTTP_HOST (127.0.0.1): address to listen on.", valueName: "value"))
    var httpHost: String?
    @Option(name: .customLong("http-port"), help: ArgumentHelp("CLAPPER_HTTP_PORT (8080): port to listen on; 0 picks a free one.", valueName: "value"))
    var httpPort: String?
    @Option(name: .customLong("public-url"), help: ArgumentHelp("CLAPPER_PUBLIC_URL (http://host:port): base URL fal can reach, for webhooks.", valueName: "value"))
    var publicUrl: String?
    @Option(name: .customLong("redis-url"), help: ArgumentHelp("CLAPPER_REDIS_URL (redis://127.0.0.1:6379): Redis to use.", valueName: "value"))
    var redisUrl: String?
    @Option(name: .customLong("redis-pool-size"), help: ArgumentHelp("CLAPPER_REDIS_POOL_SIZE (one per core): Redis connections, each carrying many commands at once.", valueName: "value"))
    var redisPoolSize: String?
    @Option(name: .customLong("redis-wait-replicas"), help: ArgumentHelp("CLAPPER_REDIS_WAIT_REPLICAS (0): replicas a job write waits for (WAIT) before it counts as kept.", valueName: "value"))
    var redisWaitReplicas: String?
    @Option(name: .customLong("redis-pool-timeout-ms"), help: ArgumentHelp("CLAPPER_REDIS_POOL_TIMEOUT_MS (2000): wait for a Redis connection being opened.", valueName: "value"))
    var redisPoolTimeoutMs: String?
    @Option(name: .customLong("redis-command-timeout-ms"), help: ArgumentHelp("CLAPPER_REDIS_COMMAND_TIMEOUT_MS (2000): deadline of one Redis command.", valueName: "value"))
    var redisCommandTimeoutMs: String?
    @Option(name: .customLong("fal-key"), help: ArgumentHelp("FAL_KEY: fal key_id:key_secret (secret).", valueName: "value"))
    var falKey: String?
    @Option(name: .customLong("fal-queue-url"), help: ArgumentHelp("FAL_QUEUE_URL (https://queue.fal.run): fal's queue API.", valueName: "value"))
    var falQueueUrl: String?
    @Option(name: .customLong("fal-jwks-url"), help: ArgumentHelp("FAL_JWKS_URL (https://rest.fal.ai/.well-known/jwks.json): fal's webhook signing keys.", valueName: "value"))
    var falJwksUrl: String?
    @Option(name: .customLong("fal-webhook-user-id"), help: ArgumentHelp("FAL_WEBHOOK_USER_ID: refuse webhooks signed for any other fal user.", valueName: "value"))
    var falWebhookUserId: String?
    @Option(name: .customLong("webhook-verify"), help: ArgumentHelp("CLAPPER_WEBHOOK_VERIFY (true): verify fal's webhook signatures.", valueName: "value"))
    var webhookVerify: String?
    @Option(name: .customLong("webhook-secret"), help: ArgumentHelp("CLAPPER_WEBHOOK_SECRET: HMAC key of webhook and event tokens (secret; required outside dev mode).", valueName: "value"))
    var webhookSecret: String?
    @Option(name: .customLong("auth-jwt-secret"), help: ArgumentHelp("CLAPPER_AUTH_JWT_SECRET: HS256 key of users' bearer tokens (secret).", valueName: "value"))
    var authJwtSecret: String?
    @Option(name: .customLong("auth-jwks-url"), help: ArgumentHelp("CLAPPER_AUTH_JWKS_URL: identity provider's JWKS for RS256/ES256/EdDSA user tokens.", valueName: "value"))
    var authJwksUrl: String?
    @Option(name: .customLong("auth-issuer"), help: ArgumentHelp("CLAPPER_AUTH_ISSUER: required iss of user tokens.", valueName: "value"))
    var authIssuer: String?
    @Option(name: .customLong("auth-audience"), help: ArgumentHelp("CLAPPER_AUTH_AUDIENCE: required aud of user tokens (required with a JWKS).", valueName: "value"))
    var authAudience: String?
    @Option(name: .customLong("admin-token"), help: ArgumentHelp("CLAPPER_ADMIN_TOKEN: bearer token for /v1/admin (secret).", valueName: "value"))
    var adminToken: String?
    @Option(name: .customLong("dev-mode"), help: ArgumentHelp("CLAPPER_DEV_MODE (0): requests without a token act as user 'dev'.", valueName: "value"))
    var devMode: String?
    @Option(name: .customLong("dev-mode-allow-remote"), help: ArgumentHelp("CLAPPER_DEV_MODE_ALLOW_REMOTE (0): allow dev mode on a non-loopback host.", valueName: "value"))
    var devModeAllowRemote: String?
    @Option(name: .customLong("log-level"), help: ArgumentHelp("CLAPPER_LOG_LEVEL (info): trace, debug, info, notice, warning, error or critical.", valueName: "value"))
    var logLevel: String?
    @Option(name: .customLong("max-body-bytes"), help: ArgumentHelp("CLAPPER_MAX_BODY_BYTES (1048576): larger request bodies get 413.", valueName: "value"))
    var maxBodyBytes: String?
    @Option(name: .customLong("ready-timeout-ms"), help: ArgumentHelp("CLAPPER_READY_TIMEOUT_MS (1000): how long /readyz waits for Redis.", valueName: "value"))
    var readyTimeoutMs: String?
    @Option(name: .customLong("http-header-timeout-ms"), help: ArgumentHelp("CLAPPER_HTTP_HEADER_TIMEOUT_MS (10000): a request head must be complete within this.", valueName: "value"))
    var httpHeaderTimeoutMs: String?
    @Option(name: .customLong("http-idle-timeout-ms"), help: ArgumentHelp("CLAPPER_HTTP_IDLE_TIMEOUT_MS (60000): idle connections close after this.", valueName: "value"))
    var httpIdleTimeoutMs: String?
    @Option(name: .customLong("sse-max-streams-per-user"), help: ArgumentHelp("CLAPPER_SSE_MAX_STREAMS_PER_USER (32): event streams per user on this instance; 0: no cap.", valueName: "value"))
    var sseMaxStreamsPerUser: String?
    @Option(name: .customLong("sse-heartbeat-seconds"), help: ArgumentHelp("CLAPPER_SSE_HEARTBEAT_SECONDS (15): event stream heartbeat.", valueName: "value"))
    var sseHeartbeatSeconds: String?
    @Option(name: .customLong("events-max-len"), help: ArgumentHelp("CLAPPER_EVENTS_MAX_LEN (100): changes kept per job for replay.", valueName: "value"))
    var eventsMaxLen: String?
    @Option(name: .customLong("model-catalog"), help: ArgumentHelp("CLAPPER_MODEL_CATALOG: JSON replacing the default model catalog.", valueName: "value"))
    var modelCatalog: String?
    @Option(name: .customLong("audio-prompt-suffix"), help: ArgumentHelp("CLAPPER_AUDIO_PROMPT_SUFFIX (\" ambient sounds\"): appended to the prompt for audio.", valueName: "value"))
    var audioPromptSuffix: String?
    @Option(name: .customLong("cors-origins"), help: ArgumentHelp("CLAPPER_CORS_ORIGINS: comma-separated origins allowed to call the API.", valueName: "value"))
    var corsOrigins: String?
    @Option(name: .customLong("reconcile-interval-ms"), help: ArgumentHelp("CLAPPER_RECONCILE_INTERVAL_MS (1000): how often the reconciler looks for due tasks; 0: off.", valueName: "value"))
    var reconcileIntervalMs: String?
    @Option(name: .customLong("reconcile-policy"), help: ArgumentHelp("CLAPPER_RECONCILE_POLICY: JSON reconcile schedule per model.", valueName: "value"))
    var reconcilePolicy: String?
    @Option(name: .customLong("fal-submit-timeout-ms"), help: ArgumentHelp("CLAPPER_FAL_SUBMIT_TIMEOUT_MS (30000): deadline of one submit to fal.", valueName: "value"))
    var falSubmitTimeoutMs: String?
    @Option(name: .customLong("job-retention-days"), help: ArgumentHelp("CLAPPER_JOB_RETENTION_DAYS (30): how long a finished job is kept.", valueName: "value"))
    var jobRetentionDays: String?
    @Option(name: .customLong("media-lifetime-days"), help: ArgumentHelp("CLAPPER_MEDIA_LIFETIME_DAYS (the job retention): how long fal keeps output media; 0: fal's default.", valueName: "value"))
    var mediaLifetimeDays: String?
    @Option(name: .customLong("result-cache"), help: ArgumentHelp("CLAPPER_RESULT_CACHE (false): every job reuses an identical earlier task's result.", valueName: "value"))
    var resultCache: String?
    @Option(name: .customLong("result-cache-unseeded"), help: ArgumentHelp("CLAPPER_RESULT_CACHE_UNSEEDED (false): tasks without a fixed seed may reuse results too.", valueName: "value"))
    var resultCacheUnseeded: String?

    /// The flags given, by the environment variable each sets.
    public var overrides: [String: String] {
        let values: [(String, String?)] = [
            ("CLAPPER_HTTP_HOST", httpHost),
            ("CLAPPER_HTTP_PORT", httpPort),
            ("CLAPPER_PUBLIC_URL", publicUrl),
            ("CLAPPER_REDIS_URL", redisUrl),
            ("CLAPPER_REDIS_POOL_SIZE", redisPoolSize),
            ("CLAPPER_REDIS_POOL_TIMEOUT_MS", redisPoolTimeoutMs),
            ("CLAPPER_REDIS_WAIT_REPLICAS", redisWaitReplicas),
            ("CLAPPER_REDIS_COMMAND_TIMEOUT_MS", redisCommandTimeoutMs),
            ("FAL_KEY", falKey),
            ("FAL_QUEUE_URL", falQueueUrl),
            ("FAL_JWKS_URL", falJwksUrl),
            ("FAL_WEBHOOK_USER_ID", falWebhookUserId),
            ("CLAPPER_WEBHOOK_VERIFY", webhookVerify),
            ("CLAPPER_WEBHOOK_SECRET", webhookSecret),
            ("CLAPPER_AUTH_JWT_SECRET", authJwtSecret),
            ("CLAPPER_AUTH_JWKS_URL", authJwksUrl),
            ("CLAPPER_AUTH_ISSUER", authIssuer),
            ("CLAPPER_AUTH_AUDIENCE", authAudience),
            ("CLAPPER_ADMIN_TOKEN", adminToken),
            ("CLAPPER_DEV_MODE", devMode),
            ("CLAPPER_DEV_MODE_ALLOW_REMOTE", devModeAllowRemote),
            ("CLAPPER_LOG_LEVEL", logLevel),
            ("CLAPPER_MAX_BODY_BYTES", maxBodyBytes),
            ("CLAPPER_READY_TIMEOUT_MS", readyTimeoutMs),
            ("CLAPPER_HTTP_HEADER_TIMEOUT_MS", httpHeaderTimeoutMs),
            ("CLAPPER_HTTP_IDLE_TIMEOUT_MS", httpIdleTimeoutMs),
            ("CLAPPER_SSE_MAX_STREAMS_PER_USER", sseMaxStreamsPerUser),
            ("CLAPPER_SSE_HEARTBEAT_SECONDS", sseHeartbeatSeconds),
            ("CLAPPER_EVENTS_MAX_LEN", eventsMaxLen),
            ("CLAPPER_MODEL_CATALOG", modelCatalog),
            ("CLAPPER_AUDIO_PROMPT_SUFFIX", audioPromptSuffix),
            ("CLAPPER_CORS_ORIGINS", corsOrigins),
            ("CLAPPER_RECONCILE_INTERVAL_MS", reconcileIntervalMs),
            ("CLAPPER_RECONCILE_POLICY", reconcilePolicy),
            ("CLAPPER_FAL_SUBMIT_TIMEOUT_MS", falSubmitTimeoutMs),
            ("CLAPPER_JOB_RETENTION_DAYS", jobRetentionDays),
            ("CLAPPER_MEDIA_LIFETIME_DAYS", mediaLifetimeDays),
            ("CLAPPER_RESULT_CACHE", resultCache),
            ("CLAPPER_RESULT_CACHE_UNSEEDED", resultCacheUnseeded),
        ]
        return Dictionary(values.compactMap { key, value in value.map { (key, $0) } }, uniquingKeysWith: { $1 })
    }

    /// Every key a flag sets, in `--help` order.
    public static let keys: [String] = [
        "CLAPPER_HTTP_HOST",
        "CLAPPER_HTTP_PORT",
        "CLAPPER_PUBLIC_URL",
        "CLAPPER_REDIS_URL",
        "CLAPPER_REDIS_POOL_SIZE",
        "CLAPPER_REDIS_POOL_TIMEOUT_MS",
        "CLAPPER_REDIS_WAIT_REPLICAS",
        "CLAPPER_REDIS_COMMAND_TIMEOUT_MS",
        "FAL_KEY",
        "FAL_QUEUE_URL",
        "FAL_JWKS_URL",
        "FAL_WEBHOOK_USER_ID",
        "CLAPPER_WEBHOOK_VERIFY",
        "CLAPPER_WEBHOOK_SECRET",
        "CLAPPER_AUTH_JWT_SECRET",
        "CLAPPER_AUTH_JWKS_URL",
        "CLAPPER_AUTH_ISSUER",
        "CLAPPER_AUTH_AUDIENCE",
        "CLAPPER_ADMIN_TOKEN",
        "CLAPPER_DEV_MODE",
        "CLAPPER_DEV_MODE_ALLOW_REMOTE",
        "CLAPPER_LOG_LEVEL",
        "CLAPPER_MAX_BODY_BYTES",
        "CLAPPER_READY_TIMEOUT_MS",
        "CLAPPER_HTTP_HEADER_TIMEOUT_MS",
        "CLAPPER_HTTP_IDLE_TIMEOUT_MS",
        "CLAPPER_SSE_MAX_STREAMS_PER_USER",
        "CLAPPER_SSE_HEARTBEAT_SECONDS",
        "CLAPPER_EVENTS_MAX_LEN",
        "CLAPPER_MODEL_CATALOG",
        "CLAPPER_AUDIO_PROMPT_SUFFIX",
        "CLAPPER_CORS_ORIGINS",
        "CLAPPER_RECONCILE_INTERVAL_MS",
        "CLAPPER_RECONCILE_POLICY",
        "CLAPPER_FAL_SUBMIT_TIMEOUT_MS",
        "CLAPPER_JOB_RETENTION_DAYS",
        "CLAPPER_MEDIA_LIFETIME_DAYS",
        "CLAPPER_RESULT_CACHE",
        "CLAPPER_RESULT_CACHE_UNSEEDED",
    ]
}
