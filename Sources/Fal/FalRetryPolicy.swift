/// Exponential backoff with full jitter, bounded in attempts and in total time.
///
/// Pure: `delay(afterAttempt:elapsed:retryAfter:random:)` decides, the client sleeps. Which
/// failures are retried at all is the client's rule (a submit only when it surely did not
/// reach fal); this type only says how long to wait and when to stop.
public struct FalRetryPolicy: Sendable, Hashable {
    /// Attempts in all, the first included. 1 disables retries.
    public var maxAttempts: Int
    /// The backoff cap before the first retry; doubles per retry.
    public var baseDelay: Duration
    /// The largest backoff cap (a `Retry-After` may ask for longer, within the budget).
    public var maxDelay: Duration
    /// No retry starts later than this after the call began.
    public var totalBudget: Duration

    public init(maxAttempts: Int = 4, baseDelay: Duration = .milliseconds(250), maxDelay: Duration = .seconds(5), totalBudget: Duration = .seconds(30)) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.totalBudget = totalBudget
    }

    public static let `default` = FalRetryPolicy()
    public static let none = FalRetryPolicy(maxAttempts: 1)

    /// How long to wait before the next attempt, or nil to stop.
    /// - Parameters:
    ///   - attempt: attempts made so far (1 after the first failure).
    ///   - elapsed: time since the call began.
    ///   - retryAfter: the server's `Retry-After`, honoured when present.
    ///   - random: a number in `0..<1` (full jitter: the wait is `random * cap`).
    public func delay(afterAttempt attempt: Int, elapsed: Duration, retryAfter: Duration?, random: Double) -> Duration? {
        guard attempt < maxAttempts else { return nil }
        let delay: Duration
        if let retryAfter {
            delay = max(.zero, retryAfter)
        } else {
            delay = backoffCap(afterAttempt: attempt) * min(max(random, 0), 1)
        }
        guard elapsed + delay < totalBudget else { return nil }
        return delay
    }

    /// `min(maxDelay, baseDelay * 2^(attempt-1))`.
    public func backoffCap(afterAttempt attempt: Int) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let cap = baseDelay * (1 << exponent)
        return min(cap, maxDelay)
    }
}
