import Foundation

/// When a delivery is tried again (Svix's published schedule): at once, then 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h, 10 h after each failure, each with ±10% jitter; after the last it is exhausted.
/// `scale` shrinks it (tests: 0.001 turns 5 s into 5 ms).
struct OutboundSchedule: Sendable {
    static let delays: [TimeInterval] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    var scale: Double = 1

    /// The wait before attempt `number` (1-based), nil past the last.
    func delay(beforeAttempt number: Int, jitter: Double = Double.random(in: -0.1...0.1)) -> TimeInterval? {
        guard number >= 1, number <= Self.delays.count else { return nil }
        return Self.delays[number - 1] * scale * (1 + jitter)
    }

    var attempts: Int { Self.delays.count }
}
