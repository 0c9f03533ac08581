import Foundation
import Redis

/// Users' limit overrides and what they use now, in Redis (the keys `JobKeys.userLimits`,
/// `userActive`, `userRate` and the spend ledger's day). The job script enforces the limits;
/// this is the operators' side.
struct UserLimitStore: Sendable {
    let redis: RedisClient
    let keys: JobKeys
    /// The configured defaults.
    let defaults: UserLimits

    /// An override per limit; nil: the default applies.
    struct Overrides: Sendable, Hashable {
        var maxInFlight: Int?
        var jobsPerMinute: Int?
        var spendPerDay: MicroUSD?

        func applied(to defaults: UserLimits) -> UserLimits {
            UserLimits(maxInFlight: maxInFlight ?? defaults.maxInFlight, jobsPerMinute: jobsPerMinute ?? defaults.jobsPerMinute, spendPerDay: spendPerDay ?? defaults.spendPerDay)
        }
    }

    /// What the user uses now.
    struct Usage: Sendable, Hashable {
        var inFlight: Int
        /// Whole jobs the jobs-per-minute bucket holds now (nil without that limit).
        var tokens: Double?
        var spentToday: MicroUSD
    }

    func overrides(_ userID: String) async throws -> Overrides {
        let reply = try await redis.send(RedisCommand("HMGET", keys.userLimits(userID), UserLimits.fields.maxInFlight, UserLimits.fields.jobsPerMinute, UserLimits.fields.spendPerDay))
        let values = (reply.array ?? []).map { $0.string.flatMap { Int64($0) } }
        guard values.count == 3 else { return Overrides() }
        // Values that are not whole numbers in range (not Clapper's write) count as absent.
        func count(_ value: Int64?) -> Int? { value.flatMap { (0...Int64(UserLimits.maxCount)).contains($0) ? Int($0) : nil } }
        return Overrides(
            maxInFlight: count(values[0]), jobsPerMinute: count(values[1]),
            spendPerDay: values[2].flatMap { (0...UserLimits.maxSpend.value).contains($0) ? MicroUSD($0) : nil }
        )
    }

    /// Replaces every override of the user at once (none given: back to the defaults).
    static let replaceScript = RedisScript(#"""
    redis.call('DEL', KEYS[1])
    for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
    return 1
    """#)

    func setOverrides(_ userID: String, _ overrides: Overrides) async throws {
        var arguments: [any RedisArgumentConvertible] = []
        if let value = overrides.maxInFlight { arguments += [UserLimits.fields.maxInFlight, value] }
        if let value = overrides.jobsPerMinute { arguments += [UserLimits.fields.jobsPerMinute, value] }
        if let value = overrides.spendPerDay { arguments += [UserLimits.fields.spendPerDay, value.value] }
        _ = try await redis.eval(Self.replaceScript, keys: [keys.userLimits(userID)], arguments: arguments)
    }

    func usage(_ userID: String, limits: UserLimits, now: Date) async throws -> Usage {
        let replies = try await redis.pipeline([
            RedisCommand("SCARD", keys.userActive(userID)),
            RedisCommand("HMGET", keys.userRate(userID), "tokens", "at"),
            RedisCommand("HVALS", keys.spend(userID: userID, day: SpendLedger.day(now))),
        ])
        guard replies.count == 3 else { throw RedisError(.protocolError, "unexpected reply to the usage pipeline") }
        let inFlight = replies[0].integer.map { Int(clamping: $0) } ?? 0
        var tokens: Double?
        if limits.jobsPerMinute > 0 {
            let rate = Double(limits.jobsPerMinute)
            let state = (replies[1].array ?? []).map { $0.string.flatMap(Double.init) }
            if state.count == 2, let stored = state[0], let at = state[1], stored.isFinite, at.isFinite {
                let elapsed = max(0, Double(now.milliseconds) - at)
                tokens = min(rate, stored + elapsed * rate / 60_000)
            } else {
                tokens = rate
            }
        }
        let spent = (replies[2].array ?? []).compactMap { $0.string.flatMap { Int64($0) } }.filter { $0 >= 0 }.reduce(Int64(0)) { $0 &+ $1 }
        return Usage(inFlight: inFlight, tokens: tokens, spentToday: MicroUSD(spent))
    }
}
