import Hummingbird
import Logging
import Redis
import ServiceLifecycle

public typealias ClapperApplication = Application<RouterResponder<ClapperRequestContext>>

/// Builds the whole gateway from configuration: the code tests run is the code shipped.
/// Services start in order (Redis first) and shut down in reverse (HTTP server first).
public func buildApplication(
    _ configuration: ClapperConfiguration,
    logger: Logger? = nil,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> ClapperApplication {
    _ = ClapperMetrics.registry
    var logger = logger ?? Logger(label: "clapper")
    logger.logLevel = configuration.logLevel

    let redis = RedisClient(configuration: configuration.redis, logger: logger)

    let router = Router(context: ClapperRequestContext.self)
    var routes = RouteRegistrar(router: router, table: RouteTable())
    // The table is complete before the first request: the error middleware reads it for 405s.
    let table = RouteTableBox()
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: LogRequestsMiddleware(.debug))
    router.add(middleware: ErrorMiddleware(table: table))
    router.add(middleware: BodyLimitMiddleware(limit: configuration.maxBodyBytes))

    HealthController(redis: redis, readyTimeout: configuration.readyTimeout).register(on: &routes)
    ClapperMetrics.register(on: &routes)
    table.set(routes.table)

    let services: [any Service] = [redis]
    return Application(
        router: router,
        configuration: .init(address: .hostname(configuration.httpHost, port: configuration.httpPort), serverName: "clapper"),
        services: services,
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
        logger: logger
    )
}
