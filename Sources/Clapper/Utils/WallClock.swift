import Foundation

/// Wall-clock time where the lifecycle rules stamp and wait: job and task timestamps, the
/// reconciler's rounds, due times and deadlines. Injected (`buildApplication(…, clock:)`), so
/// tests step time instead of waiting for it. Wall time, not a monotonic clock: these instants
/// are stored in Redis and compared across instances.
public protocol WallClock: Sendable {
    var now: Date { get }
    /// Returns after `duration` of this clock's time; throws `CancellationError` when cancelled.
    func sleep(for duration: Duration) async throws
}

/// The system's clock.
public struct SystemWallClock: WallClock {
    public init() {}
    public var now: Date { Date() }
    public func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}
