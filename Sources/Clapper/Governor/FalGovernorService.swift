import Foundation
import Logging
import Redis
import ServiceLifecycle

/// The governor's housekeeping, a `Service` on every instance. Every `interval`:
/// - hands free slots to the line (a lease that ran out frees a slot no release will announce)
///   and submits what it was given;
/// - on one instance at a time (a short Redis lock), frees slots whose task has ended or whose
///   job is gone (a release lost with a dying instance), and writes the place in line of the
///   first `positions` waiting tasks that moved (`.waiting(position:)`; one change per task that
///   moved, so a long line costs at most `positions` writes a round).
struct FalGovernorService: Service {
    let processor: JobProcessor
    let governor: FalGovernor
    let interval: Duration
    let logger: Logger
    /// Waiting tasks whose position is kept in their view (the rest show `waiting` with none).
    var positions = 50

    var lockKey: String { governor.base + "housekeeping" }

    func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await round()
            } catch {
                logger.warning("governor round failed", metadata: ["error": "\(error)"])
            }
            _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }

    func round() async throws {
        processor.submitGranted(try await governor.release([], now: processor.now()).others)
        let lock = try await governor.redis.send(RedisCommand("SET", lockKey, "1", "NX", "PX", max(1, interval.milliseconds)))
        guard lock == .status("OK") else { return }
        try await sweep()
        try await updatePositions()
    }

    /// Frees the slots of tasks that ended (or whose job is gone).
    func sweep() async throws {
        let holders = try await governor.holders()
        guard !holders.isEmpty else { return }
        let docs = try await processor.store.repository.docs(holders.map(\.jobID))
        var ended: [DueSet.Member] = []
        for (member, doc) in zip(holders, docs) {
            guard let doc, let job = try? JobDocument.decode(doc), let task = job.task(member.kind) else {
                ended.append(member)
                continue
            }
            if task.status.isTerminal { ended.append(member) }
        }
        guard !ended.isEmpty else { return }
        logger.notice("freed fal slots of ended tasks", metadata: ["tasks": "\(ended.map(\.encoded))"])
        await processor.releaseSlots(ended)
    }

    /// Writes each of the first `positions` waiting tasks' place in line (only where it moved).
    func updatePositions() async throws {
        for (position, member) in try await governor.line(first: positions).enumerated() {
            _ = try? await processor.apply(jobID: member.jobID, kind: member.kind, events: [.waiting(position: position)])
        }
    }
}
