import ServiceLifecycle

/// Runs timed work: every delay in fal-sim (queue, run, webhook retries) goes through here,
/// as child tasks of this one service, so shutdown cancels them all.
final class FalSimScheduler: Service, Sendable {
    private struct Job: Sendable {
        let deadline: ContinuousClock.Instant
        let work: @Sendable () async -> Void
    }

    private let jobs: AsyncStream<Job>
    private let continuation: AsyncStream<Job>.Continuation

    init() {
        (jobs, continuation) = AsyncStream.makeStream(of: Job.self)
    }

    /// Runs `work` after `delay` (at once when zero).
    func schedule(after delay: Duration, _ work: @escaping @Sendable () async -> Void) {
        continuation.yield(Job(deadline: .now + delay, work: work))
    }

    func run() async throws {
        await withDiscardingTaskGroup { group in
            for await job in jobs.cancelOnGracefulShutdown() {
                group.addTask {
                    do {
                        try await Task.sleep(until: job.deadline, clock: .continuous)
                    } catch {
                        return
                    }
                    await job.work()
                }
            }
            group.cancelAll()
        }
    }
}
