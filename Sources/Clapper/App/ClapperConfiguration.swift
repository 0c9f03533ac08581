import ArgumentParser
import Configuration
import Foundation
import Logging
import NIOCore
import OTel
import Redis
import S3

/// Everything Clapper reads at start, through a swift-configuration `ConfigReader`: environment
/// variables with command-line overrides (`ClapperOptions`: `--http-port 9000` or
/// `--http-port=9000` sets `CLAPPER_HTTP_PORT`; `--fal-key` sets `FAL_KEY`). Each key is named here by its environment
/// variable; its configuration key is the same words, lowercased and dot-separated
/// (`CLAPPER_HTTP_PORT` is `clapper.http.port`). Secrets (`secretKeys`) are marked secret in every
/// provider and read as secrets, so access reporting and printing redact them.
/// Every key is listed in the README's configuration table.
public struct ClapperConfiguration: Sendable {
    /// `CLAPPER_HTTP_HOST` (127.0.0.1): the address to listen on.
    public var httpHost: String
    /// `CLAPPER_HTTP_PORT` (8080); 0 picks a free port (tests).
    public var httpPort: Int
    /// `CLAPPER_PUBLIC_URL` (http://host:port): the base URL fal can reach, for webhooks.
    public var publicURL: String
    /// `CLAPPER_REDIS_URL` (redis://127.0.0.1:6379), with `CLAPPER_REDIS_POOL_SIZE` (one per core:
    /// in the binary, a connection on each of NIO's event loops),
    /// `CLAPPER_REDIS_POOL_TIMEOUT_MS` (2000), `CLAPPER_REDIS_COMMAND_TIMEOUT_MS` (2000).
    public var redis: RedisConfiguration
    /// Redis connections on NIO's shared event loops (the server's) instead of a loop thread of
    /// their own. Set by the `clapper` binary when those loops are also Swift Concurrency's
    /// executor: a handler's command and reply then stay on its thread. Off where tasks run on
    /// Swift's own pool (tests, embedders): a loop of Redis's own is not held up by HTTP work.
    public var redisOnServerLoops = false
    /// `FAL_KEY` (secret): `key_id:key_secret`.
    public var falKey: String?
    /// `FAL_QUEUE_URL` (https://queue.fal.run).
    public var falQueueURL: String
    /// `FAL_JWKS_URL` (https://rest.fal.ai/.well-known/jwks.json): fal's webhook signing keys.
    public var falJWKSURL: String
    /// `FAL_WEBHOOK_USER_ID`: when set, webhooks signed for any other fal user are rejected.
    public var falWebhookUserID: String?
    /// `CLAPPER_WEBHOOK_VERIFY` (true): verify fal's Ed25519 webhook signatures. Off only when set to false.
    public var verifyWebhookSignatures: Bool
    /// `CLAPPER_WEBHOOK_SECRET` (secret): HMAC key for the tokens in webhook URLs (and the
    /// signed `?token=` of event URLs). Required outside dev mode; in dev mode, when unset, a
    /// random one is drawn per process (see `randomSecret()`), never a constant anyone can read.
    public var webhookSecret: String
    /// `CLAPPER_AUTH_JWT_SECRET` (secret): HS256 key for users' bearer tokens.
    public var jwtSecret: String?
    /// `CLAPPER_ADMIN_TOKEN` (secret): bearer token for /v1/admin.
    public var adminToken: String?
    /// `CLAPPER_DEV_MODE` (0): requests without a token act as the user `dev`. Refused on a
    /// non-loopback `CLAPPER_HTTP_HOST` unless `CLAPPER_DEV_MODE_ALLOW_REMOTE` is 1.
    public var devMode: Bool
    /// `CLAPPER_LOG_LEVEL` (info).
    public var logLevel: Logger.Level
    /// `CLAPPER_MAX_BODY_BYTES` (1048576): larger request bodies get 413.
    public var maxBodyBytes: Int
    /// `CLAPPER_READY_TIMEOUT_MS` (1000): how long /readyz waits for Redis's PING.
    public var readyTimeout: Duration
    /// `CLAPPER_HTTP_HEADER_TIMEOUT_MS` (10000): a request's head must be complete within this
    /// after its first byte; otherwise the connection is closed.
    public var httpHeaderTimeout: Duration = .seconds(10)
    /// `CLAPPER_HTTP_IDLE_TIMEOUT_MS` (60000): a connection with no request in progress (new, or
    /// keep-alive between requests), or whose request body sends nothing, is closed after this. Responses in progress (event
    /// streams included) are never cut by it.
    public var httpIdleTimeout: Duration = .seconds(60)
    /// `CLAPPER_SSE_MAX_STREAMS_PER_USER` (32; 0: no cap): event streams one user may hold open
    /// on this instance; past it, 429 `too_many_streams`. The same default however the
    /// configuration is built.
    public var sseMaxStreamsPerUser: Int = 32
    /// `CLAPPER_MODEL_CATALOG`: JSON replacing the default model catalog (see README).
    public var modelCatalogJSON: String?
    /// `CLAPPER_AUDIO_PROMPT_SUFFIX` (" ambient sounds"): appended to the prompt for audio.
    public var audioPromptSuffix: String
    /// `CLAPPER_CORS_ORIGINS`: comma-separated origins allowed to call the API and open streams.
    public var corsOrigins: [String]
    /// `CLAPPER_SSE_HEARTBEAT_SECONDS` (15).
    public var sseHeartbeat: Duration
    /// `CLAPPER_EVENTS_MAX_LEN` (100): changes kept per job for replay.
    public var eventsMaxLength: Int
    /// `CLAPPER_RECONCILE_INTERVAL_MS` (1000): how often the reconciler looks for due tasks; 0 turns it off.
    public var reconcileInterval: Duration
    /// `CLAPPER_RECONCILE_POLICY`: JSON with the reconciler's schedule per model (first check
    /// after the expected time, exponential backoff, cap), the submit grace, batch and lease
    /// (see `ReconcilePolicy.load(json:)`); the defaults when unset.
    public var reconcilePolicy: ReconcilePolicy
    /// `CLAPPER_FAL_SUBMIT_TIMEOUT_MS` (30000): the deadline of one submit to fal. A task whose
    /// submit outcome is unknown is given up no sooner than this after the submit started.
    public var falSubmitTimeout: Duration = .seconds(30)
    /// `CLAPPER_JOB_RETENTION_DAYS` (30): how long a finished job (and its change stream) is kept.
    public var jobRetention: Duration = .seconds(30 * 24 * 3600)
    /// `CLAPPER_MEDIA_LIFETIME_DAYS` (the job retention): how long fal is asked to keep a task's
    /// output media (`X-Fal-Object-Lifecycle-Preference` on every submit); 0 leaves fal's default.
    public var mediaLifetime: Duration? = .seconds(30 * 24 * 3600)
    /// `CLAPPER_RESULT_CACHE` (false): every job reuses an earlier identical task's result while
    /// its media lives (otherwise only jobs that ask with `cache: true`).
    public var resultCache = false
    /// `CLAPPER_RESULT_CACHE_UNSEEDED` (false): tasks without a fixed seed may reuse results too.
    public var resultCacheUnseeded = false
    /// `CLAPPER_JOB_CACHE_SIZE` (8192): jobs in flight each instance keeps (`JobCache`), so a change of
    /// one needs no Redis read first; past it, the one put longest ago goes.
    public var jobCacheSize = JobCache.defaultCapacity
    /// `CLAPPER_FAL_CONCURRENCY` (0: no limit): how many tasks Clapper lets be at fal at once,
    /// across every instance (`FalGovernor`); the others wait in a fair line (`waiting`).
    public var falConcurrency = 0
    /// `CLAPPER_GOVERNOR_INTERVAL_MS` (1000): how often the governor's housekeeping runs (free
    /// slots to the line, slots of ended tasks freed, places in line written).
    public var governorInterval: Duration = .seconds(1)
    /// `CLAPPER_USER_MAX_IN_FLIGHT`, `CLAPPER_USER_JOBS_PER_MINUTE` (whole numbers) and
    /// `CLAPPER_USER_SPEND_PER_DAY_USD` (dollars): every user's default limits; 0 (the default)
    /// is no limit. An operator's override per user (admin API) wins.
    public var userLimits = UserLimits()
    /// `CLAPPER_PROGRESS_INTERVAL_MS` (2000; 0 turns it off): tasks in flight at fal are asked for
    /// their queue position and log lines this often (less often far back in the queue, up to
    /// `CLAPPER_PROGRESS_MAX_INTERVAL_MS`, 30000), by the reconciler (`ProgressPolicy`). Off
    /// (nil) unless set here or read from the environment.
    public var progress: ProgressPolicy?
    /// `CLAPPER_AUTH_JWKS_URL`: an identity provider's JWKS; users' RS256/ES256/EdDSA tokens are
    /// checked against it (HS256 tokens still against `CLAPPER_AUTH_JWT_SECRET` when set).
    public var authJWKSURL: String?
    /// `CLAPPER_AUTH_ISSUER`, `CLAPPER_AUTH_AUDIENCE`: when set, tokens must carry this `iss` / `aud`.
    public var authIssuer: String?
    public var authAudience: String?
    /// Traces over OTLP/HTTP (swift-otel); nil (the default) is off, at no cost. From the
    /// environment: on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// is set (and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`); every other
    /// standard `OTEL_*` variable (service name, sampler, headers, batch delays) is swift-otel's.
    public var tracing: OTel.Configuration?
    /// Media custody: finished media copied into the operator's S3-compatible bucket; nil (the
    /// default) is off. From `CLAPPER_MEDIA_BUCKET_URL` and the other `CLAPPER_MEDIA_*` variables.
    public var media: MediaCustodyConfiguration?
    /// Outbound events to operators' endpoints (`CLAPPER_OUTBOUND_EVENTS=1`); nil is off.
    public var outbound: OutboundConfiguration?
    /// `CLAPPER_EVENT_TOKEN_TTL_SECONDS` (600): how long an event-stream token (`eventsUrl`,
    /// `POST /v1/events/token`) is valid; a stream opened with one says `token-expired` then.
    public var eventTokenLifetime: Duration = .seconds(600)

    public struct Error: Swift.Error, CustomStringConvertible, Sendable {
        public let key: String
        public let message: String
        public var description: String { "configuration: \(key): \(message)" }
    }

    public init(
        httpHost: String = "127.0.0.1",
        httpPort: Int = 8080,
        publicURL: String? = nil,
        redis: RedisConfiguration = RedisConfiguration(),
        falKey: String? = nil,
        falQueueURL: String = "https://queue.fal.run",
        falJWKSURL: String = "https://rest.fal.ai/.well-known/jwks.json",
        falWebhookUserID: String? = nil,
        verifyWebhookSignatures: Bool = true,
        webhookSecret: String = "",
        jwtSecret: String? = nil,
        adminToken: String? = nil,
        devMode: Bool = false,
        logLevel: Logger.Level = .info,
        maxBodyBytes: Int = 1 << 20,
        readyTimeout: Duration = .seconds(1),
        modelCatalogJSON: String? = nil,
        audioPromptSuffix: String = " ambient sounds",
        corsOrigins: [String] = [],
        sseHeartbeat: Duration = .seconds(15),
        eventsMaxLength: Int = 100,
        reconcileInterval: Duration = .seconds(1),
        reconcilePolicy: ReconcilePolicy = ReconcilePolicy()
    ) {
        self.httpHost = httpHost
        self.httpPort = httpPort
        self.publicURL = publicURL ?? "http://\(httpHost):\(httpPort)"
        self.redis = redis
        self.falKey = falKey
        self.falQueueURL = falQueueURL
        self.falJWKSURL = falJWKSURL
        self.falWebhookUserID = falWebhookUserID
        self.verifyWebhookSignatures = verifyWebhookSignatures
        self.webhookSecret = webhookSecret
        self.jwtSecret = jwtSecret
        self.adminToken = adminToken
        self.devMode = devMode
        self.logLevel = logLevel
        self.maxBodyBytes = maxBodyBytes
        self.readyTimeout = readyTimeout
        self.modelCatalogJSON = modelCatalogJSON
        self.audioPromptSuffix = audioPromptSuffix
        self.corsOrigins = corsOrigins
        self.sseHeartbeat = sseHeartbeat
        self.eventsMaxLength = eventsMaxLength
        self.reconcileInterval = reconcileInterval
        self.reconcilePolicy = reconcilePolicy
    }

    /// The keys whose values are secrets: marked so in the providers and read as secrets.
    public static let secretKeys: Set<String> = ["FAL_KEY", "CLAPPER_WEBHOOK_SECRET", "CLAPPER_AUTH_JWT_SECRET", "CLAPPER_ADMIN_TOKEN", "CLAPPER_MEDIA_SECRET_ACCESS_KEY", "CLAPPER_MEDIA_SESSION_TOKEN", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"]

    /// Reads the environment, then the command-line flags in `arguments` (`ClapperOptions`).
    /// A malformed value, or a missing required one, throws an error naming the key; an unknown
    /// flag, one naming `arguments`.
    public init(environment: [String: String], arguments: [String] = []) throws(Error) {
        let options: ClapperOptions
        do {
            options = try ClapperOptions.parse(arguments)
        } catch {
            throw Error(key: "arguments", message: ClapperOptions.message(for: error))
        }
        try self.init(environment: environment, options: options)
    }

    /// Reads the environment, with the flags already parsed (the `clapper` command) first.
    public init(environment: [String: String], options: ClapperOptions) throws(Error) {
        try self.init(reader: Self.reader(environment: environment, overrides: options.overrides))
    }

    /// `overrides` (keys named like environment variables) before `environment`; `accessReporter`
    /// sees every read (secrets redacted).
    public static func reader(environment: [String: String], overrides: [String: String] = [:], accessReporter: (any AccessReporter)? = nil) -> ConfigReader {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for (name, value) in overrides {
            values[AbsoluteConfigKey(configKey(name).components)] = ConfigValue(.string(value), isSecret: secretKeys.contains(name))
        }
        return ConfigReader(providers: [
            InMemoryProvider(name: "arguments", values: values),
            EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: .specific(secretKeys)),
        ], accessReporter: accessReporter)
    }

    /// `CLAPPER_HTTP_PORT` -> `clapper.http.port`.
    static func configKey(_ name: String) -> ConfigKey {
        ConfigKey(name.lowercased().split(separator: "_").map(String.init))
    }

    /// Reads every key through `reader`. A malformed value, or a missing required one, throws an
    /// error naming the key (by its environment variable).
    public init(reader configReader: ConfigReader) throws(Error) {
        let reader = Reader(reader: configReader)

        let host = reader.string("CLAPPER_HTTP_HOST") ?? "127.0.0.1"
        let port = try reader.int("CLAPPER_HTTP_PORT", default: 8080, range: 0...65535)
        let devMode = try reader.bool("CLAPPER_DEV_MODE", default: false)
        let allowRemoteDevMode = try reader.bool("CLAPPER_DEV_MODE_ALLOW_REMOTE", default: false)
        if devMode, !allowRemoteDevMode, !Self.isLoopback(host) {
            throw Error(
                key: "CLAPPER_DEV_MODE",
                message: "is on while CLAPPER_HTTP_HOST is \(host), not a loopback address: anyone who reaches it would act as user 'dev' without a token. Listen on 127.0.0.1, turn CLAPPER_DEV_MODE off, or set CLAPPER_DEV_MODE_ALLOW_REMOTE=1 to accept that"
            )
        }
        let redisURL: RedisURL
        do {
            redisURL = try RedisURL(reader.string("CLAPPER_REDIS_URL") ?? "redis://127.0.0.1:6379")
        } catch {
            throw Error(key: "CLAPPER_REDIS_URL", message: error.message)
        }
        let redis = RedisConfiguration(
            url: redisURL,
            poolSize: try reader.int("CLAPPER_REDIS_POOL_SIZE", default: min(max(System.coreCount, 1), 64), range: 1...64),
            poolTimeout: .milliseconds(try reader.int("CLAPPER_REDIS_POOL_TIMEOUT_MS", default: 2000, range: 1...600_000)),
            commandTimeout: .milliseconds(try reader.int("CLAPPER_REDIS_COMMAND_TIMEOUT_MS", default: 2000, range: 1...600_000)),
            writeReplicas: try reader.int("CLAPPER_REDIS_WAIT_REPLICAS", default: 0, range: 0...16)
        )
        let publicURL = reader.string("CLAPPER_PUBLIC_URL") ?? "http://\(host):\(port)"
        guard let parsed = URL(string: publicURL), parsed.scheme == "http" || parsed.scheme == "https", parsed.host != nil else {
            throw Error(key: "CLAPPER_PUBLIC_URL", message: "must be an http(s) URL")
        }
        let levelText = reader.string("CLAPPER_LOG_LEVEL") ?? "info"
        guard let level = Logger.Level(rawValue: levelText.lowercased()) else {
            throw Error(key: "CLAPPER_LOG_LEVEL", message: "must be one of trace, debug, info, notice, warning, error, critical")
        }
        let webhookSecret = reader.string("CLAPPER_WEBHOOK_SECRET")
        if !devMode {
            guard webhookSecret != nil else {
                throw Error(key: "CLAPPER_WEBHOOK_SECRET", message: "is required (or set CLAPPER_DEV_MODE=1)")
            }
            guard reader.string("CLAPPER_AUTH_JWT_SECRET") != nil || reader.string("CLAPPER_AUTH_JWKS_URL") != nil else {
                throw Error(key: "CLAPPER_AUTH_JWT_SECRET", message: "is required, or CLAPPER_AUTH_JWKS_URL (or set CLAPPER_DEV_MODE=1)")
            }
        }
        let reconcilePolicy: ReconcilePolicy
        do {
            reconcilePolicy = try ReconcilePolicy.load(json: reader.string("CLAPPER_RECONCILE_POLICY"))
        } catch {
            throw Error(key: "CLAPPER_RECONCILE_POLICY", message: error.message)
        }
        for key in ["CLAPPER_WEBHOOK_SECRET", "CLAPPER_AUTH_JWT_SECRET", "CLAPPER_ADMIN_TOKEN"] {
            if let secret = reader.string(key), secret.utf8.count < 16 {
                throw Error(key: key, message: "must be at least 16 bytes")
            }
        }
        self.init(
            httpHost: host,
            httpPort: port,
            publicURL: publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL,
            redis: redis,
            falKey: reader.string("FAL_KEY"),
            falQueueURL: reader.string("FAL_QUEUE_URL") ?? "https://queue.fal.run",
            falJWKSURL: reader.string("FAL_JWKS_URL") ?? "https://rest.fal.ai/.well-known/jwks.json",
            falWebhookUserID: reader.string("FAL_WEBHOOK_USER_ID"),
            verifyWebhookSignatures: try reader.bool("CLAPPER_WEBHOOK_VERIFY", default: true),
            // Only reachable in dev mode (required otherwise). Random per process: instances
            // sharing Redis, or a restart, do not accept each other's webhook and event tokens
            // unless CLAPPER_WEBHOOK_SECRET is set (it is used in dev mode too).
            webhookSecret: webhookSecret ?? Self.randomSecret(),
            jwtSecret: reader.string("CLAPPER_AUTH_JWT_SECRET"),
            adminToken: reader.string("CLAPPER_ADMIN_TOKEN"),
            devMode: devMode,
            logLevel: level,
            maxBodyBytes: try reader.int("CLAPPER_MAX_BODY_BYTES", default: 1 << 20, range: 1024...(64 << 20)),
            readyTimeout: .milliseconds(try reader.int("CLAPPER_READY_TIMEOUT_MS", default: 1000, range: 1...60_000)),
            modelCatalogJSON: reader.string("CLAPPER_MODEL_CATALOG"),
            audioPromptSuffix: reader.untrimmed("CLAPPER_AUDIO_PROMPT_SUFFIX") ?? " ambient sounds",
            corsOrigins: (reader.string("CLAPPER_CORS_ORIGINS") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty },
            sseHeartbeat: .seconds(try reader.int("CLAPPER_SSE_HEARTBEAT_SECONDS", default: 15, range: 1...3600)),
            eventsMaxLength: try reader.int("CLAPPER_EVENTS_MAX_LEN", default: 100, range: 1...100_000),
            reconcileInterval: .milliseconds(try reader.int("CLAPPER_RECONCILE_INTERVAL_MS", default: 1000, range: 0...3_600_000)),
            reconcilePolicy: reconcilePolicy
        )
        self.falSubmitTimeout = .milliseconds(try reader.int("CLAPPER_FAL_SUBMIT_TIMEOUT_MS", default: 30_000, range: 100...600_000))
        let retentionDays = try reader.int("CLAPPER_JOB_RETENTION_DAYS", default: 30, range: 1...3650)
        self.jobRetention = .seconds(24 * 3600 * retentionDays)
        let mediaDays = try reader.int("CLAPPER_MEDIA_LIFETIME_DAYS", default: retentionDays, range: 0...3650)
        self.mediaLifetime = mediaDays == 0 ? nil : .seconds(24 * 3600 * mediaDays)
        self.resultCache = try reader.bool("CLAPPER_RESULT_CACHE", default: false)
        self.resultCacheUnseeded = try reader.bool("CLAPPER_RESULT_CACHE_UNSEEDED", default: false)
        self.falConcurrency = try reader.int("CLAPPER_FAL_CONCURRENCY", default: 0, range: 0...100_000)
        self.jobCacheSize = try reader.int("CLAPPER_JOB_CACHE_SIZE", default: JobCache.defaultCapacity, range: 1...100_000)
        self.governorInterval = .milliseconds(try reader.int("CLAPPER_GOVERNOR_INTERVAL_MS", default: 1000, range: 10...60_000))
        self.userLimits = UserLimits(
            maxInFlight: try reader.int("CLAPPER_USER_MAX_IN_FLIGHT", default: 0, range: 0...UserLimits.maxCount),
            jobsPerMinute: try reader.int("CLAPPER_USER_JOBS_PER_MINUTE", default: 0, range: 0...UserLimits.maxCount)
        )
        if let spend = reader.string("CLAPPER_USER_SPEND_PER_DAY_USD") {
            guard let dollars = Double(spend), let micro = MicroUSD(pricePerSecond: dollars, seconds: 1), micro <= UserLimits.maxSpend else {
                throw Error(key: "CLAPPER_USER_SPEND_PER_DAY_USD", message: "must be a number of dollars from 0 to 1000000")
            }
            self.userLimits.spendPerDay = micro
        }
        let progressMs = try reader.int("CLAPPER_PROGRESS_INTERVAL_MS", default: 2000, range: 0...3_600_000)
        let progressMaxMs = try reader.int("CLAPPER_PROGRESS_MAX_INTERVAL_MS", default: 30_000, range: 1...3_600_000)
        if progressMs > 0 {
            guard progressMaxMs >= progressMs else {
                throw Error(key: "CLAPPER_PROGRESS_MAX_INTERVAL_MS", message: "must be at least CLAPPER_PROGRESS_INTERVAL_MS (\(progressMs))")
            }
            self.progress = ProgressPolicy(interval: .milliseconds(progressMs), maxInterval: .milliseconds(progressMaxMs))
        }
        if let jwks = reader.string("CLAPPER_AUTH_JWKS_URL") {
            guard let url = URL(string: jwks), url.scheme == "https" || url.scheme == "http", url.host != nil else {
                throw Error(key: "CLAPPER_AUTH_JWKS_URL", message: "must be an http(s) URL")
            }
            self.authJWKSURL = jwks
            // An identity provider signs tokens for many applications: only ours may open jobs.
            guard reader.string("CLAPPER_AUTH_AUDIENCE") != nil else {
                throw Error(key: "CLAPPER_AUTH_AUDIENCE", message: "is required with CLAPPER_AUTH_JWKS_URL (tokens the identity provider signed for other applications must not open jobs)")
            }
        }
        self.httpHeaderTimeout = .milliseconds(try reader.int("CLAPPER_HTTP_HEADER_TIMEOUT_MS", default: 10_000, range: 100...3_600_000))
        self.httpIdleTimeout = .milliseconds(try reader.int("CLAPPER_HTTP_IDLE_TIMEOUT_MS", default: 60_000, range: 100...3_600_000))
        self.sseMaxStreamsPerUser = try reader.int("CLAPPER_SSE_MAX_STREAMS_PER_USER", default: 32, range: 0...1_000_000)
        self.authIssuer = reader.string("CLAPPER_AUTH_ISSUER")
        self.eventTokenLifetime = .seconds(try reader.int("CLAPPER_EVENT_TOKEN_TTL_SECONDS", default: 600, range: 1...86_400))
        if try reader.bool("CLAPPER_OUTBOUND_EVENTS", default: false) {
            let hosts = (reader.string("CLAPPER_OUTBOUND_ALLOW_HOSTS") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let scale = reader.string("CLAPPER_OUTBOUND_SCHEDULE_SCALE").map { Double($0) } ?? 1
            guard let scale, scale > 0, scale <= 10 else {
                throw Error(key: "CLAPPER_OUTBOUND_SCHEDULE_SCALE", message: "must be a number above 0, at most 10")
            }
            var outbound = OutboundConfiguration(allowedHosts: Set(hosts), scheduleScale: scale)
            outbound.disableAfter = .seconds(3600 * (try reader.int("CLAPPER_OUTBOUND_DISABLE_AFTER_HOURS", default: 120, range: 1...8760)))
            outbound.concurrency = try reader.int("CLAPPER_OUTBOUND_CONCURRENCY", default: 4, range: 1...256)
            outbound.ratePerSecond = try reader.int("CLAPPER_OUTBOUND_RATE_PER_SECOND", default: 0, range: 0...100_000)
            self.outbound = outbound
        }
        if let bucket = reader.string("CLAPPER_MEDIA_BUCKET_URL") {
            self.media = try Self.media(bucket: bucket, reader: reader)
        }
        let otlpEndpoint = reader.string("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ?? reader.string("OTEL_EXPORTER_OTLP_ENDPOINT")
        let tracingOff = reader.string("OTEL_SDK_DISABLED")?.lowercased() == "true" || reader.string("OTEL_TRACES_EXPORTER")?.lowercased() == "none"
        if otlpEndpoint != nil, !tracingOff {
            // The endpoint itself is read by swift-otel from the same variables (the base one gets
            // `/v1/traces` appended, the traces one is used as is).
            self.tracing = Self.tracesOnly()
        }
        self.authAudience = reader.string("CLAPPER_AUTH_AUDIENCE")
    }

    /// `CLAPPER_MEDIA_*`: the bucket, its keys, how URLs are handed out.
    private static func media(bucket: String, reader: Reader) throws(Error) -> MediaCustodyConfiguration {
        var addressing: S3Location.Addressing?
        switch reader.string("CLAPPER_MEDIA_BUCKET_ADDRESSING") {
        case nil: addressing = nil
        case "path": addressing = .path
        case "virtual-host": addressing = .virtualHost
        default: throw Error(key: "CLAPPER_MEDIA_BUCKET_ADDRESSING", message: "must be path or virtual-host")
        }
        let location: S3Location
        do {
            location = try S3Location(bucketURL: bucket, addressing: addressing)
        } catch {
            throw Error(key: "CLAPPER_MEDIA_BUCKET_URL", message: "\(error.message)")
        }
        guard let keyID = reader.string("CLAPPER_MEDIA_ACCESS_KEY_ID"), let secret = reader.string("CLAPPER_MEDIA_SECRET_ACCESS_KEY") else {
            throw Error(key: "CLAPPER_MEDIA_ACCESS_KEY_ID", message: "CLAPPER_MEDIA_ACCESS_KEY_ID and CLAPPER_MEDIA_SECRET_ACCESS_KEY are required with CLAPPER_MEDIA_BUCKET_URL")
        }
        let publicBase = reader.string("CLAPPER_MEDIA_PUBLIC_BASE_URL")
        if let publicBase {
            guard let url = URL(string: publicBase), url.scheme == "https" || url.scheme == "http", url.host != nil, url.query == nil else {
                throw Error(key: "CLAPPER_MEDIA_PUBLIC_BASE_URL", message: "must be an http(s) URL without a query")
            }
        }
        let prefix = reader.string("CLAPPER_MEDIA_KEY_PREFIX") ?? "clapper"
        guard prefix.utf8.count <= 200, !prefix.hasPrefix("/"), !prefix.hasSuffix("/"), (try? S3Location.encodedKey(prefix + "/x")) != nil else {
            throw Error(key: "CLAPPER_MEDIA_KEY_PREFIX", message: "must be a key prefix without a leading or trailing slash, at most 200 bytes")
        }
        return MediaCustodyConfiguration(
            location: location,
            region: reader.string("CLAPPER_MEDIA_REGION") ?? "us-east-1",
            credentials: S3Credentials(accessKeyID: keyID, secretAccessKey: secret, sessionToken: reader.string("CLAPPER_MEDIA_SESSION_TOKEN")),
            keyPrefix: prefix,
            publicBaseURL: publicBase,
            presignSeconds: try reader.int("CLAPPER_MEDIA_PRESIGN_SECONDS", default: 3600, range: 60...604_800),
            deadline: .milliseconds(try reader.int("CLAPPER_MEDIA_STORE_DEADLINE_MS", default: 3_600_000, range: 1000...604_800_000)),
            partSize: try reader.int("CLAPPER_MEDIA_PART_BYTES", default: 8 * 1024 * 1024, range: S3RequestBuilder.minimumPartSize...(512 * 1024 * 1024))
        )
    }

    /// swift-otel's configuration with traces on (OTLP, HTTP/protobuf) and its metrics and logs
    /// off: Clapper's metrics are Prometheus's, its logs swift-log's.
    public static func tracesOnly(endpoint: String? = nil) -> OTel.Configuration {
        var otel = OTel.Configuration.default
        otel.serviceName = "clapper"
        otel.metrics.enabled = false
        otel.logs.enabled = false
        otel.traces.enabled = true
        otel.diagnosticLogLevel = .warning
        if let endpoint { otel.traces.otlpExporter.endpoint = endpoint }
        return otel
    }

    /// Whether `host` is a loopback address: `localhost`, 127.0.0.0/8, `::1` (brackets allowed),
    /// or an IPv4-mapped 127.x address. Any other name or address counts as reachable from outside.
    static func isLoopback(_ host: String) -> Bool {
        var host = host.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" || host == "localhost." { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            let bytes = withUnsafeBytes(of: v6) { Array($0) }
            if bytes[0..<15].allSatisfy({ $0 == 0 }), bytes[15] == 1 { return true }  // ::1
            if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff { return bytes[12] == 127 }  // ::ffff:127.x.x.x
        }
        return false
    }

    /// 32 random bytes (the system's cryptographic generator), hex: the dev-mode webhook secret.
    static func randomSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: .min ... .max, using: &generator)) }.joined()
    }

    /// Clapper's reading rules over a `ConfigReader`: values are read as strings and judged here,
    /// so each message names the key and the accepted forms stay as documented.
    private struct Reader {
        let reader: ConfigReader

        /// The value as set, secrets read as secrets.
        func untrimmed(_ key: String) -> String? {
            reader.string(forKey: ClapperConfiguration.configKey(key), isSecret: ClapperConfiguration.secretKeys.contains(key))
        }

        /// Trimmed; blank counts as unset.
        func string(_ key: String) -> String? {
            guard let value = untrimmed(key)?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
            return value
        }

        func int(_ key: String, default defaultValue: Int, range: ClosedRange<Int>) throws(Error) -> Int {
            guard let text = string(key) else { return defaultValue }
            guard let value = Int(text), range.contains(value) else {
                throw Error(key: key, message: "must be a whole number in \(range.lowerBound)...\(range.upperBound), got \"\(text)\"")
            }
            return value
        }

        func bool(_ key: String, default defaultValue: Bool) throws(Error) -> Bool {
            guard let text = string(key)?.lowercased() else { return defaultValue }
            switch text {
            case "1", "true", "yes", "on": return true
            case "0", "false", "no", "off": return false
            default: throw Error(key: key, message: "must be true or false, got \"\(text)\"")
            }
        }
    }
}
