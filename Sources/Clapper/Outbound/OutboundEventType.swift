/// The events Clapper sends to operators' endpoints (issue 17, the seed's event names).
enum OutboundEventType: String, Sendable, CaseIterable, Codable {
    case videoSubmitted = "video.job.submitted"
    case audioSubmitted = "audio.job.submitted"
    case jobUpdated = "job.updated"
    case jobCompleted = "job.completed"
    case jobFailed = "job.failed"

    /// What one change of a job (from `before`, nil for a new job, to `after`) announces:
    /// a task fal accepted (`…submitted`), every change (`job.updated`), and the job's end.
    static func of(before: Job?, after: Job) -> [OutboundEventType] {
        var types: [OutboundEventType] = []
        if after.video.falRequestID != nil, before?.video.falRequestID == nil { types.append(.videoSubmitted) }
        if let audio = after.audio, audio.falRequestID != nil, before?.audio?.falRequestID == nil { types.append(.audioSubmitted) }
        types.append(.jobUpdated)
        let settled = after.tasks.allSatisfy(\.status.isTerminal)
        let wasSettled = before.map { $0.tasks.allSatisfy(\.status.isTerminal) } ?? false
        if settled, !wasSettled || before?.status != after.status {
            switch after.status {
            case .completed: types.append(.jobCompleted)
            case .failed: types.append(.jobFailed)
            default: break
            }
        }
        return types
    }
}
