/// fal's webhook retries: 10 tries over about 2 hours, scaled for tests.
struct FalSimWebhookRetrySchedule: Sendable {
    /// Waits before tries 2...10 (sum 7125 s, just under 2 hours).
    static let falDelays: [Duration] = [
        .seconds(15), .seconds(30), .seconds(60), .seconds(120), .seconds(300),
        .seconds(600), .seconds(1200), .seconds(1800), .seconds(3000),
    ]

    static var maximumAttempts: Int { falDelays.count + 1 }

    let scale: Double

    /// The wait before try `attempt` (2...10) after try `attempt - 1` failed; nil = give up.
    func delay(beforeAttempt attempt: Int) -> Duration? {
        guard attempt >= 2, attempt <= Self.maximumAttempts else { return nil }
        return Self.falDelays[attempt - 2] * max(0, scale)
    }
}
