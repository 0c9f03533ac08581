import Foundation
import Redis
import Tracing

/// A job as stored: the internal document and fal's raw outputs, at a version.
struct StoredJob: Sendable {
    var version: Int
    var userID: String
    var doc: [UInt8]
    /// fal's raw output bytes by task name (`video`, `audio`), exactly as received.
    var outputs: [String: [UInt8]]
}

/// A change to the global indexes, made in the same atomic step as the job's own write.
enum IndexChange: Sendable, Hashable {
    /// Put a task (`jobId|task`) on the due set for the reconciler.
    case schedule(member: String, atMilliseconds: Int64)
    case unschedule(member: String)
    /// fal request id -> `jobId|task`.
    case mapRequest(requestID: String, member: String)
    /// The user's job list, by creation time.
    case addToUser(atMilliseconds: Int64)
    /// Drop the user's list entries created before this (their jobs have expired).
    case trimUser(beforeMilliseconds: Int64)
    /// A finished request leaves the request index.
    case unmapRequest(requestID: String)
    /// A finished job's keys expire after the retention; a job that runs again keeps them.
    case expire(seconds: Int)
    case persist
    /// The job joins / leaves its user's set of jobs in flight (`UserLimits.maxInFlight`).
    case markActive
    case markInactive
    /// Media custody: a task whose media is owed a copy into the bucket joins / leaves the store
    /// set (`JobKeys.store`), due at the time given.
    case scheduleStore(member: String, atMilliseconds: Int64)
    case unscheduleStore(member: String)
    /// Outbound events: the change joins its shard's outbox with these event types.
    case outbox(types: [OutboundEventType])
}

/// A create held against its user's limits in the job script (`JobScripts.apply`).
struct JobAdmission: Sendable, Hashable {
    /// The defaults; an override stored for the user wins over each.
    var limits: UserLimits
    /// The new job's estimated cost.
    var cost: MicroUSD
    /// Now, for the jobs-per-minute bucket and the day of the spend limit.
    var now: Date
}

/// One compare-and-set write of a job.
struct JobWrite: Sendable {
    var jobID: String
    var userID: String
    /// 0 creates the job (it must not exist yet).
    var expectedVersion: Int
    var doc: [UInt8]
    var view: [UInt8]
    /// Raw outputs to store (field name without the `output:` prefix).
    var outputs: [(String, [UInt8])] = []
    var indexChanges: [IndexChange] = []
    /// With a create: the Idempotency-Key's hash and the value to keep under it.
    var idempotency: (keyHash: String, value: String)?
    /// With a create: the user's limits to hold it against (nil: no limits).
    var admission: JobAdmission?
    /// The published change carries `version` and `doc` (a job still in flight): every instance
    /// caches it from the events channel (`JobCache`), so its next change, wherever it lands,
    /// needs no read first. `doc` must then be the JSON `JobDocument` writes.
    var publishesDoc = false

    var newVersion: Int { expectedVersion + 1 }
}

enum JobWriteResult: Sendable, Equatable {
    /// Written; the change's id in the job's stream, and whether as many replicas as asked
    /// (`JobRepository.replicas`) had it before the reply (always true when none are asked).
    case written(streamID: String, replicated: Bool)
    /// Someone else changed the job first (or it already exists).
    case conflict
    /// The Idempotency-Key already names a job: its stored value.
    case idempotent(String)
    /// A user limit refused the create; nothing was written.
    case refused(UserLimitRefusal)
}

/// The Redis side of jobs: reads, and atomic compare-and-set writes through one Lua script.
struct JobRepository: Sendable {
    let redis: RedisClient
    let keys: JobKeys
    let eventsMaxLength: Int
    /// Replicas each write waits for (`RedisConfiguration.writeReplicas`: `WAIT`, sent behind the
    /// script in the same round trip); 0 waits for none. A master that dies before its replica has
    /// a write loses it (asynchronous replication): a write not yet replicated is reported so the
    /// caller can have it sent again (fal's webhook answered 503 is retried).
    var replicas: Int { redis.configuration.writeReplicas }
    /// A span around each write (it stores and publishes the change); its trace context rides in
    /// the published message so every instance's stream delivery joins the trace (off: none).
    var tracer = ClapperTracer.off

    func load(_ jobID: String) async throws -> StoredJob? {
        let reply = try await redis.send(RedisCommand("HMGET", keys.job(jobID), "version", "user", "doc", "output:video", "output:audio"))
        guard let fields = reply.array, fields.count == 5,
              let version = fields[0].integer, let user = fields[1].string, let doc = fields[2].bytes
        else { return nil }
        var outputs: [String: [UInt8]] = [:]
        if let video = fields[3].bytes { outputs["video"] = video }
        if let audio = fields[4].bytes { outputs["audio"] = audio }
        return StoredJob(version: Int(version), userID: user, doc: doc, outputs: outputs)
    }

    /// The public JSON of a job and its owner: one round trip, no decoding.
    func view(_ jobID: String) async throws -> (userID: String, view: [UInt8])? {
        let reply = try await redis.send(RedisCommand("HMGET", keys.job(jobID), "user", "view"))
        guard let fields = reply.array, fields.count == 2, let user = fields[0].string, let view = fields[1].bytes else { return nil }
        return (user, view)
    }

    func write(_ change: JobWrite) async throws -> JobWriteResult {
        guard tracer.isOn else { return try await write(change, trace: nil) }
        return try await tracer.span("job.publish", kind: .producer) { span in
            span?.attributes["clapper.job_id"] = change.jobID
            span?.attributes["clapper.version"] = change.newVersion
            let result = try await write(change, trace: span.flatMap { tracer.traceparent(of: $0.context) })
            // Only a written change was published; a lost compare-and-set is tried again.
            if case .written = result { span?.attributes["clapper.written"] = true } else { span?.attributes["clapper.written"] = false }
            return result
        }
    }

    private func write(_ change: JobWrite, trace: String?) async throws -> JobWriteResult {
        var arguments: [any RedisArgumentConvertible] = [
            change.expectedVersion,
            change.newVersion,
            change.doc,
            change.view,
            keys.channel(shard: keys.shard(ofJob: change.jobID)),
            Self.jsonString(change.jobID),
            Self.jsonString(change.userID),
            eventsMaxLength,
            change.userID,
            change.idempotency?.value ?? "",
            change.outputs.count,
        ]
        // Sent even when every default is off: an override may limit this one user.
        if let admission = change.admission, change.expectedVersion == 0 {
            arguments += [5, admission.limits.maxInFlight, admission.limits.jobsPerMinute, admission.limits.spendPerDay.value, admission.cost.value, admission.now.milliseconds]
        } else {
            arguments.append(0)
        }
        for (field, bytes) in change.outputs {
            arguments.append("output:" + field)
            arguments.append(bytes)
        }
        for index in change.indexChanges {
            switch index {
            case .schedule(let member, let at): arguments += ["zadd", at, member]
            case .unschedule(let member): arguments += ["zrem", "-", member]
            case .mapRequest(let requestID, let member): arguments += ["hset", requestID, member]
            case .addToUser(let at): arguments += ["user", at, change.jobID]
            case .trimUser(let before): arguments += ["usertrim", before, "-"]
            case .unmapRequest(let requestID): arguments += ["hdel", requestID, "-"]
            case .expire(let seconds): arguments += ["expire", seconds, "-"]
            case .persist: arguments += ["persist", "-", "-"]
            case .markActive: arguments += ["active", "-", change.jobID]
            case .markInactive: arguments += ["inactive", "-", change.jobID]
            case .scheduleStore(let member, let at): arguments += ["szadd", at, member]
            case .unscheduleStore(let member): arguments += ["szrem", "-", member]
            case .outbox(let types): arguments += ["outbox", types.map(\.rawValue).joined(separator: ","), change.jobID]
            }
        }
        if keys.isSharded { arguments += ["spublish", "-", "-"] }
        if let trace { arguments += ["trace", "-", trace] }
        if change.publishesDoc { arguments += ["doc", "-", "-"] }
        let idempotencyKey = change.idempotency.map { keys.idempotency(userID: change.userID, keyHash: $0.keyHash) } ?? keys.job(change.jobID)
        // The rate, spend and override keys are read only when a create is admitted; other writes
        // (every webhook) pass the job key in their place, so no day is formatted for them.
        let admissionKeys = change.admission.map {
            [keys.userRate(change.userID), keys.spend(userID: change.userID, day: SpendLedger.day($0.now)), keys.userLimits(change.userID)]
        } ?? Array(repeating: keys.job(change.jobID), count: 3)
        let shard = keys.shard(ofJob: change.jobID)
        let (reply, waited) = try await redis.eval(
            JobScripts.apply,
            keys: [
                keys.job(change.jobID), keys.events(change.jobID), keys.due(shard: shard), keys.requests(shard: shard), keys.userJobs(change.userID), idempotencyKey,
                keys.userActive(change.userID),
            ] + admissionKeys + [keys.store(shard: shard), keys.outbox(shard: shard)],
            arguments: arguments,
            then: replicas > 0 ? [RedisCommand("WAIT", replicas, redis.configuration.writeReplicaTimeoutMilliseconds)] : []
        )
        guard let parts = reply.array, parts.count >= 2, let status = parts[0].integer else {
            throw RedisError(.protocolError, "unexpected reply from the job script")
        }
        if status == 3 {
            guard parts.count == 4, let name = parts[1].string, let limit = UserLimitRefusal.Limit(rawValue: name),
                  let value = parts[2].integer, let retryMs = parts[3].integer else {
                throw RedisError(.protocolError, "unexpected refusal from the job script")
            }
            let now = change.admission?.now ?? Date()
            let retry: Int64 = switch limit {
            case .inFlight: 5
            // A reply out of range (a damaged bucket) is clamped before any arithmetic.
            case .jobsPerMinute: max(1, (min(max(retryMs, 0), 86_400_000) + 999) / 1000)
            case .spendPerDay: max(1, Int64(SpendLedger.secondsUntilNextDay(after: now)))
            }
            return .refused(UserLimitRefusal(limit: limit, value: value, retryAfterSeconds: Int(clamping: retry)))
        }
        switch status {
        case 1:
            let replicated = replicas == 0 || (waited.first?.integer ?? 0) >= Int64(replicas)
            return .written(streamID: parts[1].string ?? "", replicated: replicated)
        case 2: return .idempotent(parts[1].string ?? "")
        default: return .conflict
        }
    }

    /// `jobId|task` of a fal request id.
    /// On a cluster the request's shard is not known: every shard's index is asked, at once.
    func member(forRequest requestID: String) async throws -> String? {
        let replies = try await redis.pipeline(keys.allShards.map { RedisCommand("HGET", keys.requests(shard: $0), requestID) })
        for reply in replies {
            if case .error(let message) = reply { throw RedisError(.server, message) }
            if let member = reply.string { return member }
        }
        return nil
    }

    /// The stored documents of `jobIDs` (nil for jobs that do not exist), one pipeline.
    func docs(_ jobIDs: [String]) async throws -> [[UInt8]?] {
        guard !jobIDs.isEmpty else { return [] }
        return try await redis.pipeline(jobIDs.map { RedisCommand("HGET", keys.job($0), "doc") }).map(\.bytes)
    }

    /// A user's jobs, newest first, after `cursor` (`<createdAtMs>:<jobId>` of the last one seen).
    func list(userID: String, limit: Int, cursor: (score: Int64, jobID: String)?) async throws -> (views: [[UInt8]], next: (Int64, String)?) {
        let key = keys.userJobs(userID)
        let top = cursor.map { String($0.score) } ?? "+inf"
        // Equal scores come in descending member order: skip those at or before the cursor.
        let reply = try await redis.send(RedisCommand("ZREVRANGEBYSCORE", key, top, "-inf", "WITHSCORES", "LIMIT", 0, limit + 64))
        var page: [(String, Int64)] = []
        let flat = reply.array ?? []
        var index = 0
        while index + 1 < flat.count, page.count < limit + 1 {
            // A score that is not a finite whole number of ms in Int64 (`inf`, 1e300: someone
            // else's write) is skipped, never converted unchecked.
            if let member = flat[index].string, let score = flat[index + 1].string.flatMap(Double.init).flatMap({ Int64(exactly: $0.rounded(.towardZero)) }) {
                if let cursor, score == cursor.score, member >= cursor.jobID {
                    // already seen
                } else {
                    page.append((member, score))
                }
            }
            index += 2
        }
        let hasMore = page.count > limit
        page = Array(page.prefix(limit))
        guard !page.isEmpty else { return ([], nil) }
        let replies = try await redis.pipeline(page.map { RedisCommand("HGET", keys.job($0.0), "view") })
        let views = replies.compactMap(\.bytes)
        let next = hasMore ? page.last.map { ($0.1, $0.0) } : nil
        return (views, next)
    }

    static func jsonString(_ text: String) -> String {
        String(decoding: JSONWriter.quoted(text), as: UTF8.self)
    }
}
