import ServiceLifecycle

/// Work that follows a stored change and must not hold up the answer to fal's webhook:
/// submitting the audio after the video, cancelling at fal. It runs in this service's task group;
/// on graceful shutdown the service takes no new work and finishes what was queued, for a few
/// seconds at most. Nothing is
/// lost if the process dies first: the task stays on the due set and the reconciler takes it up.
final class FollowUps: Service, Sendable {
    typealias Work = @Sendable () async -> Void
    private let work: AsyncStream<Work>
    private let queue: AsyncStream<Work>.Continuation

    init() {
        (work, queue) = AsyncStream.makeStream(of: Work.self)
    }

    /// Queues `job`; false when the service has stopped (the caller then does it itself).
    @discardableResult
    func enqueue(_ job: @escaping Work) -> Bool {
        if case .enqueued = queue.yield(job) { return true }
        return false
    }

    /// How long queued and running follow-ups may take once shutdown begins; then they are
    /// cancelled (a cancelled submit is an unknown outcome, which the reconciler settles).
    static let shutdownGrace: Duration = .seconds(3)

    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withDiscardingTaskGroup { jobs in
                    for await job in self.work {
                        jobs.addTask { await job() }
                    }
                }
            }
            group.addTask {
                try? await gracefulShutdown()
                self.queue.finish()
                try? await Task.sleep(for: Self.shutdownGrace)
            }
            // Done when everything queued has run, or when the grace after shutdown is over.
            await group.next()
            group.cancelAll()
        }
    }
}
