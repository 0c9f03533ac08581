import Foundation

/// How much one user may ask of the operator's fal account: jobs in flight (created and not
/// every task finished), new jobs per minute (a token bucket holding a minute's worth, refilled
/// continuously), and estimated spend per UTC day (fal's accepted submits as the spend ledger
/// has them, plus the new job's estimate). 0 means no limit. Defaults come from the configuration;
/// an operator's override per user lives in Redis (`PUT /v1/admin/users/{userId}/limits`). The job
/// script holds a create against them atomically, across instances, before anything is stored.
public struct UserLimits: Sendable, Hashable, Codable {
    public var maxInFlight: Int
    public var jobsPerMinute: Int
    public var spendPerDay: MicroUSD

    public init(maxInFlight: Int = 0, jobsPerMinute: Int = 0, spendPerDay: MicroUSD = MicroUSD(0)) {
        self.maxInFlight = maxInFlight
        self.jobsPerMinute = jobsPerMinute
        self.spendPerDay = spendPerDay
    }

    /// Every limit off: nothing to check.
    public var isUnlimited: Bool { maxInFlight == 0 && jobsPerMinute == 0 && spendPerDay.value == 0 }

    /// The largest value of a count limit (an override or a default).
    public static let maxCount = 1_000_000
    /// The largest spend limit: a million dollars a day.
    public static let maxSpend = MicroUSD(1_000_000 * 1_000_000)

    /// Field names in the override hash, as the job script reads them.
    static let fields = (maxInFlight: "maxInFlight", jobsPerMinute: "jobsPerMinute", spendPerDay: "spendPerDayMicroUsd")
}

/// A create a user limit refused: which limit, its value, and when to try again.
public struct UserLimitRefusal: Sendable, Hashable, Error {
    public enum Limit: String, Sendable, Hashable {
        case inFlight = "in_flight"
        case jobsPerMinute = "jobs_per_minute"
        case spendPerDay = "spend_per_day"
    }

    public var limit: Limit
    /// The limit's value (jobs, jobs a minute, or micro-USD a day).
    public var value: Int64
    /// When a new create may pass, in whole seconds (at least 1).
    public var retryAfterSeconds: Int

    /// The message for the client, naming the limit.
    public var message: String {
        switch limit {
        case .inFlight: "you have \(value) jobs in flight, the most allowed; try again when one finishes"
        case .jobsPerMinute: "at most \(value) new jobs a minute; try again in \(retryAfterSeconds) s"
        case .spendPerDay: "this job would take today's estimated spend past the limit of $\(MicroUSD(value).json); try again tomorrow (UTC)"
        }
    }
}
