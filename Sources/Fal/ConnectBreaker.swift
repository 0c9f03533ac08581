/// Whether to open a connection to an origin that has just refused one: the rules, without I/O.
///
/// After a failed connect the origin is left alone for a backoff (0.25 s, doubling to 10 s);
/// then one caller probes it while every other caller is refused at once; a probe that connects
/// (or any request that gets through) closes the breaker. Requests refused here fail as
/// "cannot connect": they surely did not reach the server.
///
/// Why: on Linux, URLSession registers each libcurl socket with a dispatch source, and a burst
/// of refused connections reuses descriptors while sources are still being cancelled, which
/// crashes the process (swift-corelibs-foundation#4791 and its family; seen here with fal's port
/// closed: the gateway died within two minutes at 35 creates a second, each submit tried up to 4 times).
/// Refusing locally keeps that burst to the requests already in flight when the origin went away.
public struct ConnectBreaker: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        case closed
        /// Refusing until `until`; the next wait is twice `backoff`.
        case open(until: ContinuousClock.Instant, backoff: Duration)
        /// One probe is out; everyone else is refused.
        case probing(backoff: Duration)
    }

    public enum Decision: Sendable, Hashable {
        case send
        /// Connect once to see whether the origin is back, then send (or fail).
        case probe
        case refuse
    }

    public static let firstBackoff: Duration = .milliseconds(250)
    public static let maxBackoff: Duration = .seconds(10)

    public private(set) var state: State = .closed

    public init() {}

    public mutating func decide(now: ContinuousClock.Instant) -> Decision {
        switch state {
        case .closed:
            return .send
        case .open(let until, let backoff):
            guard now >= until else { return .refuse }
            state = .probing(backoff: backoff)
            return .probe
        case .probing:
            return .refuse
        }
    }

    /// A connection was made (a probe, or a request that got an answer).
    public mutating func connected() {
        state = .closed
    }

    /// A connect failed (a probe, or a request that could not connect).
    public mutating func failedToConnect(now: ContinuousClock.Instant) {
        let backoff: Duration
        switch state {
        case .closed: backoff = Self.firstBackoff
        case .open(_, let last), .probing(let last): backoff = min(last * 2, Self.maxBackoff)
        }
        state = .open(until: now + backoff, backoff: backoff)
    }
}
