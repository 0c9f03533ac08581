import Fal
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import OTel
import Redis
import ServiceLifecycle
import Synchronization

public typealias ClapperApplication = Application<RouterResponder<ClapperRequestContext>>

/// Builds the whole gateway from configuration: the code tests run is the code shipped.
/// Services start in order (Redis first) and shut down in reverse (HTTP server first).
public func buildApplication(
    _ configuration: ClapperConfiguration,
    logger: Logger? = nil,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> ClapperApplication {
    try await buildApplication(configuration, logger: logger, onServerRunning: onServerRunning, hooks: BuildHooks())
}

/// What tests may look at inside a built application: its route table (compared with
/// openapi.yaml), its event hub (subscriber counts), its per-user stream counts and its
/// readiness probe (PINGs sent).
final class BuildHooks: Sendable {
    let routes = KnownRoutes()
    private let hub = Mutex<EventHub?>(nil)
    private let limiter = Mutex<StreamLimiter?>(nil)
    private let probe = Mutex<ReadinessProbe?>(nil)

    var eventHub: EventHub? { hub.withLock { $0 } }
    var streamLimiter: StreamLimiter? { limiter.withLock { $0 } }
    var readinessProbe: ReadinessProbe? { probe.withLock { $0 } }
    fileprivate func set(_ eventHub: EventHub) { hub.withLock { $0 = eventHub } }
    fileprivate func set(_ streamLimiter: StreamLimiter) { limiter.withLock { $0 = streamLimiter } }
    fileprivate func set(_ readinessProbe: ReadinessProbe) { probe.withLock { $0 = readinessProbe } }
}

/// As above, filling in `hooks`.
func buildApplication(
    _ configuration: ClapperConfiguration,
    logger: Logger?,
    onServerRunning: @escaping @Sendable (Int) async -> Void,
    hooks: BuildHooks,
    clock: any WallClock = SystemWallClock()
) async throws -> ClapperApplication {
    let knownRoutes = hooks.routes
    _ = ClapperMetrics.registry
    var logger = logger ?? Logger(label: "clapper")
    logger.logLevel = configuration.logLevel

    // Traces (OTLP) when configured; otherwise no tracer at all.
    var tracer = ClapperTracer.off
    var tracingService: (any Service)?
    if var otel = configuration.tracing {
        otel.diagnosticLogger = .custom(logger)
        let backend = try OTel.makeTracingBackend(configuration: otel)
        tracer = ClapperTracer(tracer: backend.factory)
        tracingService = backend.service
        logger.info("traces are exported over OTLP", metadata: ["service": "\(otel.serviceName)"])
    }

    let redis = RedisClient(
        configuration: configuration.redis,
        logger: logger,
        eventLoopGroup: configuration.redisOnServerLoops ? MultiThreadedEventLoopGroup.singleton : RedisClient.sharedEventLoopGroup
    )
    let catalog = try ModelCatalog.load(json: configuration.modelCatalogJSON, audioPromptSuffix: configuration.audioPromptSuffix)
    let keys = configuration.redis.url.isCluster ? JobKeys.cluster() : JobKeys()
    var repository = JobRepository(redis: redis, keys: keys, eventsMaxLength: configuration.eventsMaxLength)
    repository.tracer = tracer
    let fal = FalClient(
        configuration: FalClientConfiguration(
            queueURL: configuration.falQueueURL,
            key: configuration.falKey,
            timeouts: .init(submit: configuration.falSubmitTimeout)
        ),
        logger: logger
    )
    let followUps = FollowUps()
    var links = MediaLinks(configuration: configuration.media)
    links.clock = clock
    let governor = configuration.falConcurrency > 0 ? FalGovernor(redis: redis, prefix: keys.prefix, limit: configuration.falConcurrency) : nil
    var store = JobStore(repository: repository, catalog: catalog, policy: configuration.reconcilePolicy, progress: configuration.progress, retention: configuration.jobRetention)
    store.outbound = configuration.outbound != nil
    store.cache = JobCache(capacity: configuration.jobCacheSize)
    let events = EventHub(redis: redis, subscriberConfiguration: configuration.redis, keys: keys, tracer: tracer, links: links, cache: store.cache, logger: logger)
    store.onWritten = { [events] in events.deliverWritten($0) }
    var processor = JobProcessor(
        store: store,
        fal: fal,
        catalog: catalog,
        webhookTokens: WebhookToken(secret: configuration.webhookSecret),
        publicURL: configuration.publicURL,
        logger: logger,
        clock: clock,
        followUps: followUps,
        mediaLifetime: configuration.mediaLifetime,
        spend: SpendLedger(redis: redis, keys: keys),
        resultCache: ResultCache(redis: redis, keys: keys),
        cacheByDefault: configuration.resultCache,
        cacheUnseeded: configuration.resultCacheUnseeded
    )
    processor.governor = governor
    processor.tracer = tracer
    let verifier = configuration.verifyWebhookSignatures
        ? FalWebhookVerifier(
            configuration: FalWebhookVerifierConfiguration(jwksURL: configuration.falJWKSURL, pinnedUserID: configuration.falWebhookUserID),
            logger: logger
        )
        : nil
    if configuration.devMode {
        logger.warning("CLAPPER_DEV_MODE is on: requests without a token act as the user 'dev'; do not run this in production")
    }
    if verifier == nil {
        logger.warning("CLAPPER_WEBHOOK_VERIFY=false: fal webhook signatures are NOT verified; anyone who learns a webhook URL can complete its task")
    }
    if verifier != nil, configuration.falWebhookUserID == nil {
        logger.warning("FAL_WEBHOOK_USER_ID is not set: a webhook signed by any fal account is accepted when its URL token is right")
    }
    if configuration.falKey == nil {
        logger.warning("FAL_KEY is not set: submits to fal will be refused")
    }

    let router = Router(context: ClapperRequestContext.self)
    router.add(middleware: RequestIDMiddleware())
    if tracer.isOn { router.add(middleware: RequestSpanMiddleware(tracer: tracer)) }
    router.add(middleware: CORSPolicyMiddleware(origins: configuration.corsOrigins))
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: RequestLogMiddleware())
    // Reads the finished route list (set below, before the first request) for 405s.
    router.add(middleware: ErrorMiddleware(routes: knownRoutes))
    router.add(middleware: BodyLimitMiddleware(limit: configuration.maxBodyBytes))
    let authenticator = Authenticator(
        verifier: configuration.jwtSecret.map { JWTVerifier(secret: $0, issuer: configuration.authIssuer, audience: configuration.authAudience) },
        jwks: configuration.authJWKSURL.flatMap(URL.init(string:)).map {
            JWKSTokenVerifier(url: $0, issuer: configuration.authIssuer, audience: configuration.authAudience, logger: logger)
        },
        adminToken: configuration.adminToken,
        devMode: configuration.devMode
    )

    // Operations: anyone may ask.
    let health = HealthController(redis: redis, readyTimeout: configuration.readyTimeout)
    hooks.set(health.probe)
    health.addRoutes(to: router.group())
    ClapperMetrics.addRoutes(to: router.group())
    try await StatusPageController.load().addRoutes(to: router.group())
    // fal's callbacks: no user; the URL token and fal's signature decide.
    WebhookController(processor: processor, tokens: WebhookToken(secret: configuration.webhookSecret), verifier: verifier, catalog: catalog)
        .addRoutes(to: router.group())
    // Users: bearer tokens (event streams may carry a signed ?token= instead).
    let users = router.group("v1").add(middleware: UserAuthMiddleware(authenticator: authenticator))
    hooks.set(events)
    let streams = StreamLimiter(maxPerUser: configuration.sseMaxStreamsPerUser)
    hooks.set(streams)
    EventsController(configuration: configuration, redis: redis, keys: keys, hub: events, streams: streams, links: links).addRoutes(to: users)
    JobsController(
        processor: processor,
        catalog: catalog,
        eventTokens: EventTokenSigner(secret: configuration.webhookSecret, lifetime: configuration.eventTokenLifetime.seconds),
        publicURL: configuration.publicURL,
        limits: configuration.userLimits,
        links: links
    ).addRoutes(to: users)
    // Operators: the admin token.
    let reconcileWorker = TaskReconciler(processor: processor, queue: DueSet(redis: redis, keys: keys), policy: configuration.reconcilePolicy, progress: configuration.progress)
    let admin = router.group("v1/admin").add(middleware: AdminAuthMiddleware(authenticator: authenticator))
    AdminController(worker: reconcileWorker, clock: clock).addRoutes(to: admin)
    OutboundController(store: OutboundStore(redis: redis, keys: keys), configuration: configuration.outbound, clock: clock).addRoutes(to: admin)
    UserLimitsController(store: UserLimitStore(redis: redis, keys: keys, defaults: configuration.userLimits), clock: clock).addRoutes(to: admin)
    knownRoutes.set(from: router)
    let serverName = "clapper"

    // The reconciler after the event hub: it stops before it on shutdown (reverse order).
    // Follow-ups after Redis (they use it) and before the server (which feeds them): on shutdown
    // the server stops first, then the queued follow-ups finish, then Redis closes.
    // The trace exporter first: it stops last, after the spans of the others' shutdown.
    var services: [any Service] = tracingService.map { [$0] } ?? []
    services += [redis, events, followUps] as [any Service]
    if configuration.reconcileInterval > .zero {
        services.append(Reconciler(worker: reconcileWorker, interval: configuration.reconcileInterval, logger: logger, clock: clock))
    }
    if let media = configuration.media {
        services.append(MediaCustodyService(
            processor: processor, queue: DueSet(redis: redis, keys: keys, set: .store),
            copier: MediaCopier(configuration: media, transport: ConnectGuardTransport(URLSessionTransport())),
            links: links, configuration: media, logger: logger, clock: clock
        ))
    }
    if let outbound = configuration.outbound {
        services.append(OutboundService(
            store: OutboundStore(redis: redis, keys: keys), keys: keys, configuration: outbound,
            transport: URLSessionTransport(delegate: NoRedirectSession()), links: links, logger: logger, clock: clock
        ))
    }
    if let governor {
        services.append(FalGovernorService(processor: processor, governor: governor, interval: configuration.governorInterval, logger: logger))
    }
    // Slow clients: a request head must arrive within the header timeout; a connection with
    // nothing in progress is closed after the idle timeout (responses in progress, event streams
    // included, are never cut by either).
    // Event streams leave Hummingbird's connection handling once answered (StreamingHTTP1Channel):
    // the same responder answers them, with every middleware.
    let responder = router.buildResponder()
    let http1 = HTTP1Channel.Configuration(
        additionalChannelHandlers: [RequestHeadTimeoutHandler(timeout: TimeAmount(configuration.httpHeaderTimeout))],
        idleTimeout: TimeAmount(configuration.httpIdleTimeout)
    )
    let streamServer = EventStreamServer(responder: responder, serverName: serverName, logger: logger)
    return Application(
        responder: responder,
        server: HTTPServerBuilder { hummingbird in
            StreamingHTTP1Channel(http1: HTTP1Channel(responder: hummingbird, configuration: http1), streams: streamServer)
        },
        configuration: .init(address: .hostname(configuration.httpHost, port: configuration.httpPort), serverName: serverName),
        services: services,
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
        logger: logger
    )
}
