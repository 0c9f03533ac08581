import Foundation

/// The reconcile policy's answer to "when is this task looked at next" right after a change,
/// which the store writes to the due set in the same atomic step.
struct ReconcileSchedule: TaskCheckSchedule {
    let policy: ReconcilePolicy
    let catalog: ModelCatalog
    /// When set, a task in flight is looked at no later than its progress gap.
    var progress: ProgressPolicy? = nil

    func nextCheck(of task: JobTask, in job: Job) -> Date {
        let model = catalog.model(id: task.model)
        if task.status == .pending, task.submitStartedAt == nil, job.dueSince(task.kind) == nil {
            // Waits for the video: the video's completion submits it; a late look catches a crash in between.
            return job.updatedAt.addingTimeInterval(TimeInterval(model?.timeoutSeconds ?? 3600))
        }
        if task.status == .pending {
            // Not acknowledged by fal yet: a crash, an abandoned try (sent again then) or an
            // unknown submit outcome shows here.
            return job.updatedAt.addingTimeInterval(policy.submitGraceSeconds)
        }
        let first = policy.firstCheck(acceptedAt: task.submittedAt ?? job.updatedAt, model: task.model, expectedSeconds: model?.expectedSeconds ?? 60)
        return progress?.next(for: task, after: job.updatedAt, notLaterThan: first) ?? first
    }
}

extension JobStore {
    /// A store that schedules checks by `policy`.
    init(
        repository: JobRepository, catalog: ModelCatalog, policy: ReconcilePolicy = ReconcilePolicy(),
        progress: ProgressPolicy? = nil, retention: Duration = .seconds(30 * 24 * 3600)
    ) {
        self.init(repository: repository, catalog: catalog, schedule: ReconcileSchedule(policy: policy, catalog: catalog, progress: progress), retention: retention)
    }
}
