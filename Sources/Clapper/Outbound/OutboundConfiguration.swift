/// Outbound events (`CLAPPER_OUTBOUND_*`); nil in `ClapperConfiguration.outbound` is off (the job
/// script then writes no outbox).
public struct OutboundConfiguration: Sendable {
    /// `CLAPPER_OUTBOUND_ALLOW_HOSTS`: hosts endpoints may name although they resolve to
    /// loopback, private or link-local addresses (comma-separated, lower case).
    var addressGuard = OutboundAddressGuard()
    /// `CLAPPER_OUTBOUND_SCHEDULE_SCALE`: the retry schedule times this (1: Svix's).
    var schedule = OutboundSchedule()
    /// `CLAPPER_OUTBOUND_DISABLE_AFTER_HOURS` (120): an endpoint failing this long is disabled.
    public var disableAfter: Duration = .seconds(120 * 3600)
    /// `CLAPPER_OUTBOUND_CONCURRENCY` (4): deliveries at once per endpoint per instance.
    public var concurrency = 4
    /// `CLAPPER_OUTBOUND_RATE_PER_SECOND` (0: none): tries started per endpoint per second, over
    /// every instance (a counter per endpoint and second in Redis).
    public var ratePerSecond = 0
    /// How often the outbox and the due deliveries are looked at when idle.
    public var interval: Duration = .milliseconds(200)

    public init(allowedHosts: Set<String> = [], scheduleScale: Double = 1) {
        addressGuard.allowedHosts = Set(allowedHosts.map { $0.lowercased() })
        schedule.scale = scheduleScale
    }
}
