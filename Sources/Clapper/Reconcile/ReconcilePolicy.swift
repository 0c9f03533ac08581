import Foundation

/// When the reconciler looks at a task again: pure arithmetic, no I/O.
///
/// Per model (falling back to `defaults`): the first check comes `graceSeconds` after the
/// model's expected completion time (`ModelCatalog.Model.expectedSeconds` after fal accepted it);
/// from then on the gaps grow exponentially, `baseSeconds`, `baseSeconds * factor`, … up to
/// `maxSeconds`. The gap after the n-th check is computed from the time since the first check
/// (`base + (factor - 1) * elapsed`, the closed form of that series), so nothing has to be
/// counted in Redis. `maxSeconds` is capped below fal's 6-minute retention of large results, so
/// a result is fetched while it is still there.
public struct ReconcilePolicy: Sendable, Hashable, Codable {
    public struct Schedule: Sendable, Hashable, Codable {
        public var graceSeconds: Double
        public var baseSeconds: Double
        public var factor: Double
        public var maxSeconds: Double

        public init(graceSeconds: Double = 5, baseSeconds: Double = 5, factor: Double = 2, maxSeconds: Double = 60) {
            self.graceSeconds = graceSeconds
            self.baseSeconds = baseSeconds
            self.factor = factor
            self.maxSeconds = maxSeconds
        }
    }

    /// fal keeps results of 10 KB or more for 6 minutes: the longest allowed gap stays below.
    public static let retentionLimitSeconds: Double = 300

    public var defaults: Schedule
    /// Overrides by fal model id.
    public var models: [String: Schedule]
    /// A task whose submit outcome is unknown (a crash or a lost answer) is failed with
    /// `submit_outcome_unknown` this long after its submit started (never submitted again).
    public var submitGraceSeconds: Double
    /// How many due tasks one instance claims per Redis round trip.
    public var batchSize: Int
    /// How long a claim holds a task away from other instances (pushed-forward score).
    public var leaseSeconds: Double
    /// How many tasks of a batch are worked on at once.
    public var concurrency: Int

    public init(
        defaults: Schedule = Schedule(),
        models: [String: Schedule] = [:],
        submitGraceSeconds: Double = 120,
        batchSize: Int = 100,
        leaseSeconds: Double = 120,
        concurrency: Int = 16
    ) {
        self.defaults = defaults
        self.models = models
        self.submitGraceSeconds = submitGraceSeconds
        self.batchSize = batchSize
        self.leaseSeconds = leaseSeconds
        self.concurrency = concurrency
    }

    public init(from decoder: any Decoder) throws {
        let fallback = ReconcilePolicy()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        defaults = try c.decodeIfPresent(Schedule.self, forKey: .defaults) ?? fallback.defaults
        models = try c.decodeIfPresent([String: Schedule].self, forKey: .models) ?? [:]
        submitGraceSeconds = try c.decodeIfPresent(Double.self, forKey: .submitGraceSeconds) ?? fallback.submitGraceSeconds
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? fallback.batchSize
        leaseSeconds = try c.decodeIfPresent(Double.self, forKey: .leaseSeconds) ?? fallback.leaseSeconds
        concurrency = try c.decodeIfPresent(Int.self, forKey: .concurrency) ?? fallback.concurrency
    }

    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { message }
    }

    /// The policy from `CLAPPER_RECONCILE_POLICY` JSON (nil or empty: the defaults), e.g.
    /// `{"defaults":{"graceSeconds":5,"baseSeconds":5,"factor":2,"maxSeconds":60},
    ///   "models":{"fal-ai/mmaudio-v2":{"graceSeconds":2,"baseSeconds":3,"factor":1.5,"maxSeconds":30}},
    ///   "submitGraceSeconds":120,"batchSize":100,"leaseSeconds":120,"concurrency":16}`.
    public static func load(json: String?) throws(LoadError) -> ReconcilePolicy {
        guard let json, !json.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return ReconcilePolicy() }
        let policy: ReconcilePolicy
        do {
            policy = try JSONDecoder().decode(ReconcilePolicy.self, from: Data(json.utf8))
        } catch {
            throw LoadError(message: "invalid JSON: \(error)")
        }
        try policy.validate()
        return policy
    }

    func validate() throws(LoadError) {
        for (name, schedule) in [("defaults", defaults)] + models.sorted(by: { $0.key < $1.key }) {
            guard schedule.graceSeconds >= 0, schedule.baseSeconds > 0, schedule.factor >= 1,
                  schedule.maxSeconds >= schedule.baseSeconds, schedule.maxSeconds <= Self.retentionLimitSeconds
            else {
                throw LoadError(message: "schedule \(name): need graceSeconds >= 0, baseSeconds > 0, factor >= 1, baseSeconds <= maxSeconds <= \(Int(Self.retentionLimitSeconds))")
            }
        }
        guard submitGraceSeconds > 0 else { throw LoadError(message: "submitGraceSeconds must be positive") }
        guard (1...1000).contains(batchSize) else { throw LoadError(message: "batchSize must be 1...1000") }
        guard (1...256).contains(concurrency) else { throw LoadError(message: "concurrency must be 1...256") }
        guard leaseSeconds >= 1 else { throw LoadError(message: "leaseSeconds must be at least 1") }
    }

    public func schedule(forModel id: String) -> Schedule { models[id] ?? defaults }

    /// The first status check of a task fal accepted at `acceptedAt`.
    public func firstCheck(acceptedAt: Date, model: String, expectedSeconds: Int) -> Date {
        acceptedAt.addingTimeInterval(Double(max(0, expectedSeconds)) + schedule(forModel: model).graceSeconds)
    }

    /// The check after one made at `now`, for a task whose first check was due at `firstCheck`;
    /// never later than `deadline` (when the task is to be given up).
    public func nextCheck(after now: Date, firstCheck: Date, model: String, deadline: Date?) -> Date {
        let s = schedule(forModel: model)
        let elapsed = max(0, now.timeIntervalSince(firstCheck))
        let gap = min(s.maxSeconds, s.baseSeconds + (s.factor - 1) * elapsed)
        var next = now.addingTimeInterval(gap)
        if let deadline, deadline > now, deadline < next { next = deadline }
        return next
    }
}
