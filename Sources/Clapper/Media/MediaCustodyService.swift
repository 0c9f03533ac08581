import Fal
import Foundation
import Logging
import Metrics
import S3
import ServiceLifecycle

/// Media custody's worker: claims tasks owed a copy from the store set (`JobKeys.store`, written
/// by the job script when a task completes), copies each (`MediaCopier`) and stores the outcome
/// as the task's `.stored` / `.storeFailed` event, which takes it off the set in the same step.
/// A claim is a lease: an instance that dies mid-copy leaves the task to come due again, and the
/// copy that follows writes the same key, so a task still ends with one object.
struct MediaCustodyService: Service {
    let processor: JobProcessor
    let queue: DueSet
    let copier: MediaCopier
    let links: MediaLinks
    let configuration: MediaCustodyConfiguration
    let logger: Logger
    let clock: any WallClock
    /// Longer than a copy can take (parts of `partSize`, each bounded by the request timeout).
    var lease: TimeInterval = 600

    func run() async throws {
        logger.info("media custody started", metadata: ["bucket": "\(configuration.location.bucket)"])
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            var handled = 0
            do {
                handled = try await round()
            } catch {
                logger.warning("media custody round failed", metadata: ["error": "\(error)"])
            }
            if handled >= configuration.concurrency { continue }
            let interval = configuration.interval, clock = self.clock
            _ = try? await cancelWhenGracefulShutdown { try await clock.sleep(for: interval) }
        }
        logger.info("media custody stopped")
    }

    @discardableResult
    func round() async throws -> Int {
        let entries = try await queue.claim(now: clock.now, lease: lease, limit: configuration.concurrency)
        await withTaskGroup(of: Void.self) { group in
            for entry in entries { group.addTask { await handle(entry) } }
        }
        return entries.count
    }

    private func handle(_ entry: DueSet.Entry) async {
        let job: Job
        do {
            guard let loaded = try await processor.store.load(entry.jobID)?.job else {
                try await queue.release(entry, next: nil)
                return
            }
            job = loaded
        } catch {
            logger.warning("media custody could not read a job; its lease ends by itself", metadata: ["job": "\(entry.jobID)", "error": "\(error)"])
            return
        }
        guard let task = job.task(entry.kind), task.awaitsStore, let media = task.mediaURL, let source = URL(string: media) else {
            try? await queue.release(entry, next: nil)
            return
        }
        let key = links.key(jobID: job.id, kind: entry.kind, source: source)
        let failure: MediaCopier.Failure
        do {
            let bytes = try await copier.copy(from: source, to: key, contentType: MediaLinks.contentType(for: key))
            let url = try links.storedURL(key: key)
            _ = try await processor.apply(jobID: job.id, kind: entry.kind, event: .stored(url: url))
            Self.stored.increment()
            Self.bytes.increment(by: Int64(bytes))
            return
        } catch let error as MediaCopier.Failure {
            failure = error
        } catch {
            // Redis did not take the outcome: the lease ends and the copy is made again (same key).
            logger.warning("media copied but its outcome not stored; it will be copied again", metadata: ["job": "\(job.id)", "task": "\(entry.kind.rawValue)", "error": "\(error)"])
            return
        }
        let now = clock.now
        let completed = task.completedAt ?? now
        let deadline = min(completed.addingTimeInterval(configuration.deadline.seconds), job.mediaExpiresAt ?? .distantFuture)
        if now >= deadline {
            let error = TaskError(code: "store_failed", message: "the media could not be copied into the bucket: \(failure.message)", detail: failure.code)
            logger.error("media copy given up", metadata: ["job": "\(job.id)", "task": "\(entry.kind.rawValue)", "reason": "\(failure)"])
            do {
                _ = try await processor.apply(jobID: job.id, kind: entry.kind, event: .storeFailed(error))
                Self.failed.increment()
            } catch {
                logger.warning("could not store a failed copy; it will be looked at again", metadata: ["job": "\(job.id)", "error": "\(error)"])
            }
            return
        }
        // Tried again sooner right after completion, then less often: a quarter of the time since
        // the task completed, from 1 s up to 5 minutes.
        let wait = min(max(now.timeIntervalSince(completed) / 4, 1), 300)
        logger.notice("media copy failed; trying again", metadata: ["job": "\(job.id)", "task": "\(entry.kind.rawValue)", "reason": "\(failure)", "in_seconds": "\(Int(wait))"])
        Self.retries.increment()
        try? await queue.release(entry, next: now.addingTimeInterval(wait))
    }

    static let stored = Counter(label: "clapper_media_copies_total", dimensions: [("outcome", "stored")])
    static let retries = Counter(label: "clapper_media_copies_total", dimensions: [("outcome", "retry")])
    static let failed = Counter(label: "clapper_media_copies_total", dimensions: [("outcome", "failed")])
    static let bytes = Counter(label: "clapper_media_copied_bytes_total")
}
