import Foundation
import Logging
import Metrics
import ServiceLifecycle

/// The background reconciler: a `Service` on every instance. Each round it claims the tasks
/// whose next check is due (`DueSet.claim`: taken and pushed forward by a lease in one Redis
/// step, so two instances never work on the same task in the same round), reconciles each one
/// (`TaskReconciler`) and sets its next check. It ends on graceful shutdown.
struct Reconciler: Service {
    let worker: TaskReconciler
    let interval: Duration
    let logger: Logger
    /// Rounds wait on it and due times are read against it.
    let clock: any WallClock

    var queue: DueSet { worker.queue }
    var policy: ReconcilePolicy { worker.policy }

    /// How often the age of the oldest unfinished task is measured (it reads the due set's jobs).
    static let oldestAgeEvery: TimeInterval = 15

    func run() async throws {
        logger.info("reconciler started", metadata: ["interval": "\(interval)"])
        var lastAgeScan = Date.distantPast
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            var claimedFull = false
            do {
                let handled = try await round()
                claimedFull = handled >= claimLimit
                if now().timeIntervalSince(lastAgeScan) >= Self.oldestAgeEvery {
                    lastAgeScan = now()
                    await measureOldest()
                }
            } catch {
                logger.warning("reconcile round failed", metadata: ["error": "\(error)"])
            }
            // A full batch means more is due: go on at once (still ending on shutdown).
            if claimedFull { continue }
            let interval = self.interval
            let clock = self.clock
            _ = try? await cancelWhenGracefulShutdown { try await clock.sleep(for: interval) }
        }
        logger.info("reconciler stopped")
    }

    private func now() -> Date { clock.now }

    /// Entries claimed at once: no more than run at once, so none waits in this process while
    /// its lease runs out (another instance would then poll it too).
    var claimLimit: Int { min(policy.batchSize, policy.concurrency) }

    /// Claims due tasks (at most `claimLimit`) and works through them; returns how many were claimed.
    @discardableResult
    func round() async throws -> Int {
        let entries = try await queue.claim(now: now(), lease: policy.leaseSeconds, limit: claimLimit)
        guard !entries.isEmpty else { return 0 }
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for entry in entries {
                if running >= policy.concurrency {
                    await group.next()
                    running -= 1
                }
                // On shutdown start nothing new: unstarted claims come due again when their lease ends.
                if Task.isShuttingDownGracefully || Task.isCancelled { break }
                group.addTask { await handle(entry) }
                running += 1
            }
        }
        return entries.count
    }

    private func handle(_ entry: DueSet.Entry) async {
        let start = ContinuousClock.now
        let result = await worker.reconcile(jobID: entry.jobID, kind: entry.kind, now: now(), dryRun: false, force: false)
        Metrics.Timer(label: "clapper_reconcile_check_duration_seconds", dimensions: [("action", result.report.action.rawValue)]).record(duration: start.duration(to: .now))
        do {
            if result.removeEntry {
                try await queue.release(entry, next: nil)
            } else if let next = result.next {
                try await queue.release(entry, next: next)
            }
        } catch {
            // The lease ends by itself; the task comes due again then.
            logger.warning("could not reschedule a task", metadata: ["task": "\(entry.member)", "error": "\(error)"])
        }
        if result.report.changed {
            logger.info("reconciled", metadata: [
                "job": "\(entry.jobID)", "task": "\(entry.kind.rawValue)", "action": "\(result.report.action.rawValue)",
                "before": "\(result.report.before ?? "-")", "after": "\(result.report.after ?? "-")",
            ])
        }
    }

    /// Sets the oldest-unfinished-task gauge from the jobs on the due set (at most 2000 read).
    func measureOldest() async {
        guard let entries = try? await queue.entries(limit: 2000) else { return }
        let jobIDs = Array(Set(entries.map(\.jobID)))
        var oldest: Date?
        for chunk in stride(from: 0, to: jobIDs.count, by: 200).map({ Array(jobIDs[$0..<min($0 + 200, jobIDs.count)]) }) {
            for created in await worker.createdDates(of: chunk) {
                if oldest.map({ created < $0 }) ?? true { oldest = created }
            }
        }
        Self.oldestUnfinished.record(oldest.map { max(0, now().timeIntervalSince($0)) } ?? 0)
    }

    static let oldestUnfinished = Gauge(label: "clapper_reconcile_oldest_unfinished_seconds")
}
