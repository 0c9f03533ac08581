import Foundation
import Metrics
import Redis

/// When the reconciler is to look at an unfinished task after a change: the reconcile policy's
/// business (`ReconcileSchedule`); the store writes it to the due set with the change.
protocol TaskCheckSchedule: Sendable {
    func nextCheck(of task: JobTask, in job: Job) -> Date
}

/// Jobs as domain values on top of `JobRepository`: encodes the document and the public view,
/// and turns every change into a compare-and-set, retried when another writer got there first.
struct JobStore: Sendable {
    let repository: JobRepository
    let catalog: ModelCatalog
    /// When the reconciler first looks at a task after a change (the store only writes it down).
    let schedule: any TaskCheckSchedule
    /// How long a finished job is kept (its hash and change stream then expire).
    var retention: Duration = .seconds(30 * 24 * 3600)
    /// Recently seen versions of jobs (a hint; see `JobCache`).
    var cache = JobCache()
    /// Outbound events on: every change joins the outbox with the event types it announces.
    var outbound = false
    /// Told of every change this instance stores, with its stream id and view, as soon as Redis
    /// took it (`EventHub.deliverWritten`: this instance's own streams get it without waiting for
    /// the publish to come back on the events channel).
    var onWritten: (@Sendable (Written) -> Void)?

    /// A change just stored: what its published message carries for the streams.
    struct Written: Sendable {
        let jobID: String
        let userID: String
        let streamID: String
        let view: [UInt8]
    }

    struct Loaded: Sendable {
        var job: Job
        /// fal's raw outputs by task name.
        var outputs: [String: [UInt8]]
    }

    enum CreateResult: Sendable {
        case created(Job)
        /// The Idempotency-Key already names a job: its id and whether the body was the same.
        case existing(jobID: String, sameBody: Bool)
        /// A user limit refused it: nothing was stored.
        case refused(UserLimitRefusal)
    }

    /// The outcome of `update`: the job after the attempt and what the rules said.
    struct Update: Sendable {
        var job: Job
        var transition: JobTransition
        /// The stream id of the stored change; nil when nothing changed.
        var streamID: String?
        /// fal's raw output stored with this change (a task that completed), if any.
        var storedOutput: [UInt8]?
        /// False when the change was stored but not yet on the replicas asked for
        /// (`JobRepository.replicas`): a failover now could lose it.
        var replicated = true
    }


    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return decoder
    }()

    /// Stores a new job; with `limits`, only if its user is within them (one atomic step).
    func create(_ job: Job, idempotency: (keyHash: String, bodyHash: String)?, limits: UserLimits? = nil) async throws -> CreateResult {
        var job = job
        job.version = 1
        let retentionMilliseconds = Int64(retention.components.seconds) * 1000
        var indexes: [IndexChange] = [
            .addToUser(atMilliseconds: job.createdAt.milliseconds),
            .trimUser(beforeMilliseconds: job.createdAt.milliseconds - retentionMilliseconds),
        ]
        indexes += scheduleChanges(before: nil, after: job)
        let write = JobWrite(
            jobID: job.id,
            userID: job.userID,
            expectedVersion: 0,
            doc: try JobDocument.encode(job),
            view: JobView.encode(job, videoOutput: nil, audioOutput: nil),
            indexChanges: indexes,
            idempotency: idempotency.map { ($0.keyHash, "\(job.id) \($0.bodyHash)") },
            admission: limits.map { JobAdmission(limits: $0, cost: job.estimatedCost ?? MicroUSD(0), now: job.createdAt) },
            publishesDoc: !Self.isSettled(job)
        )
        switch try await repository.write(write) {
        case .written(let streamID, _):
            keep(Loaded(job: job, outputs: [:]))
            onWritten?(Written(jobID: job.id, userID: job.userID, streamID: streamID, view: write.view))
            return .created(job)
        case .idempotent(let value):
            let parts = value.split(separator: " ", maxSplits: 1).map(String.init)
            return .existing(jobID: parts.first ?? "", sameBody: parts.count == 2 && parts[1] == idempotency?.bodyHash)
        case .refused(let refusal):
            return .refused(refusal)
        case .conflict:
            throw ClapperError(.contention, "another write to job \(job.id) won; try again")
        }
    }

    /// A job's public JSON and its owner, as stored (no decoding).
    func view(_ jobID: String) async throws -> (userID: String, view: [UInt8])? {
        try await repository.view(jobID)
    }

    /// A user's job views, newest first, after `cursor`.
    func list(userID: String, limit: Int, cursor: (score: Int64, jobID: String)?) async throws -> (views: [[UInt8]], next: (Int64, String)?) {
        try await repository.list(userID: userID, limit: limit, cursor: cursor)
    }

    /// The task a fal request in flight belongs to (finished tasks leave the request index).
    func task(forRequest requestID: String) async throws -> DueSet.Member? {
        try await repository.member(forRequest: requestID).flatMap(DueSet.Member.init(encoded:))
    }

    /// Creation times of `jobIDs` (jobs that no longer exist are left out), one round trip.
    func createdDates(of jobIDs: [String]) async throws -> [Date] {
        try await repository.docs(jobIDs).compactMap { doc in
            doc.flatMap { try? JobDocument.decode($0).createdAt }
        }
    }

    func load(_ jobID: String) async throws -> Loaded? {
        guard let stored = try await repository.load(jobID) else { return nil }
        var job = try JobDocument.decode(stored.doc)
        job.version = stored.version
        return Loaded(job: job, outputs: stored.outputs)
    }

    /// Loads the job, lets `change` apply the rules to it, and stores the result if it changed,
    /// all as one compare-and-set on `version`; on a conflict it starts over from a fresh read,
    /// so the rules always see the latest state (a repeat then comes back `.ignored`).
    /// `newOutput` is fal's raw output for a task, stored with the change.
    func update(
        _ jobID: String,
        now: Date = Date(),
        _ change: @Sendable (inout Job) -> (JobTransition, newOutput: (TaskKind, [UInt8])?)
    ) async throws -> Update {
        var backoff = Duration.milliseconds(25)
        var passingFailures = 0
        for _ in 0..<16 {
            do {
                return try await attempt(jobID, now: now, change)
            } catch let error as RedisError where error.isTransient && passingFailures < 5 {
                // A busy pool, a reconnect, a restarted Redis still loading: read again and retry.
                // A write whose reply was lost may have landed; the fresh read then shows it and
                // the rules ignore the repeat (a submit mark names its writer, see `JobProcessor`).
                passingFailures += 1
                try await Task.sleep(for: backoff)
                backoff *= 2
            } catch is Conflict {
                continue
            }
        }
        throw ClapperError(.contention, "job \(jobID) kept changing under 16 tries")
    }

    private struct Conflict: Error {}

    /// One read, rules, compare-and-set round; throws `Conflict` when another writer won.
    private func attempt(
        _ jobID: String,
        now: Date,
        _ change: @Sendable (inout Job) -> (JobTransition, newOutput: (TaskKind, [UInt8])?)
    ) async throws -> Update {
        let cached = cache.get(jobID)
        let loaded: Loaded
        if let cached {
            JobCache.hits.increment()
            loaded = cached
        } else {
            JobCache.misses.increment()
            guard let fresh = try await load(jobID) else { throw ClapperError(.notFound, "no such job") }
            loaded = fresh
        }
        var job = loaded.job
        let before = job
        let (transition, newOutput) = change(&job)
        guard transition.outcome.isChanged else {
            if cached != nil {
                // Ignored on a cached state: decide again on what Redis holds now.
                cache.remove(jobID)
                throw Conflict()
            }
            keep(loaded)
            return Update(job: before, transition: transition, streamID: nil)
        }
        job.version = before.version + 1
        var outputs = loaded.outputs
        var newOutputs: [(String, [UInt8])] = []
        if let (kind, bytes) = newOutput {
            outputs[kind.rawValue] = bytes
            newOutputs.append((kind.rawValue, bytes))
        }
        let write = JobWrite(
            jobID: jobID,
            userID: job.userID,
            expectedVersion: before.version,
            doc: try JobDocument.encode(job),
            view: JobView.encode(job, videoOutput: outputs["video"], audioOutput: outputs["audio"]),
            outputs: newOutputs,
            indexChanges: scheduleChanges(before: before, after: job),
            publishesDoc: !Self.isSettled(job)
        )
        switch try await repository.write(write) {
        case .written(let streamID, let replicated):
            keep(Loaded(job: job, outputs: outputs))
            onWritten?(Written(jobID: jobID, userID: job.userID, streamID: streamID, view: write.view))
            return Update(job: job, transition: transition, streamID: streamID, storedOutput: newOutputs.first?.1, replicated: replicated)
        case .conflict, .idempotent, .refused:
            cache.remove(jobID)
            throw Conflict()
        }
    }

    /// Caches a job still in flight; a settled one leaves the cache (a repeat for it is decided on a
    /// fresh read anyway, and its stored outputs are the largest part of an entry).
    private func keep(_ loaded: Loaded) {
        if Self.isSettled(loaded.job) { cache.remove(loaded.job.id) } else { cache.put(loaded) }
    }

    /// Index changes that follow from a task's move: request ids mapped when fal accepts,
    /// unfinished tasks on the due set (checked by the reconciler), finished ones off it.
    func scheduleChanges(before: Job?, after: Job) -> [IndexChange] {
        var changes: [IndexChange] = []
        for task in after.tasks {
            let old = before?.task(task.kind)
            let member = DueSet.Member(jobID: after.id, kind: task.kind).encoded
            if let requestID = task.falRequestID, requestID != old?.falRequestID {
                changes.append(.mapRequest(requestID: requestID, member: member))
            }
            guard old?.status != task.status || old?.falRequestID != task.falRequestID || old?.submitStartedAt != task.submitStartedAt else { continue }
            if task.status.isTerminal {
                changes.append(.unschedule(member: member))
                if let requestID = task.falRequestID { changes.append(.unmapRequest(requestID: requestID)) }
            } else {
                changes.append(.schedule(member: member, atMilliseconds: schedule.nextCheck(of: task, in: after).milliseconds))
            }
        }
        // After-video: once the video completes the audio is due now (its follow-up submits it;
        // if that is lost, the reconciler does, a submit grace later).
        if after.audioMode == .afterVideo, after.video.status == .completed, before?.video.status != .completed,
           let audio = after.audio, audio.status == .pending, audio.submitStartedAt == nil {
            changes.append(.schedule(member: DueSet.Member(jobID: after.id, kind: .audio).encoded, atMilliseconds: schedule.nextCheck(of: audio, in: after).milliseconds))
        }
        // Likewise the merge once video and audio both completed.
        if after.mergeInputsReady, !(before?.mergeInputsReady ?? false), let merge = after.merge, merge.status == .pending, merge.submitStartedAt == nil {
            changes.append(.schedule(member: DueSet.Member(jobID: after.id, kind: .merge).encoded, atMilliseconds: schedule.nextCheck(of: merge, in: after).milliseconds))
        }
        // Media custody: a task owed a copy joins the store set at once, and leaves it when
        // copied or given up (or when a retry takes its media away).
        if after.custody == true {
            for task in after.tasks {
                let owed = task.awaitsStore, wasOwed = before?.task(task.kind)?.awaitsStore ?? false
                let member = DueSet.Member(jobID: after.id, kind: task.kind).encoded
                if owed, !wasOwed { changes.append(.scheduleStore(member: member, atMilliseconds: after.updatedAt.milliseconds)) }
                if wasOwed, !owed { changes.append(.unscheduleStore(member: member)) }
            }
        }
        if outbound { changes.append(.outbox(types: OutboundEventType.of(before: before, after: after))) }
        let wasSettled = before.map(Self.isSettled) ?? false
        if before == nil, !Self.isSettled(after) { changes.append(.markActive) }
        if Self.isSettled(after), !wasSettled {
            changes.append(.expire(seconds: Int(retention.components.seconds)))
            changes.append(.markInactive)
        } else if wasSettled, !Self.isSettled(after) {
            changes.append(.persist)
            changes.append(.markActive)
        }
        return changes
    }

    /// Every task of the job is terminal: nothing more comes from fal.
    static func isSettled(_ job: Job) -> Bool {
        job.tasks.allSatisfy(\.status.isTerminal)
    }
}
