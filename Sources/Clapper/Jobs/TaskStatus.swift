/// The pieces of work a job can ask fal for: the video, its audio track, and the two merged
/// into one file (`feature.merge`).
public enum TaskKind: String, Codable, Sendable, Hashable, CaseIterable {
    case video
    case audio
    case merge
}

/// Where one task stands. A task only moves forward:
/// `pending` < `queued` < `running` < one terminal state.
public enum TaskStatus: String, Codable, Sendable, Hashable, CaseIterable {
    /// Not yet accepted by fal (no request id recorded, or the submit is in flight).
    case pending
    case queued
    case running
    case completed
    case failed
    case canceled
    case timedOut = "timed_out"

    /// `completed`, `failed`, `canceled` or `timed_out`: nothing moves the task any more
    /// (except an explicit `.retry` out of `failed` / `timed_out`).
    public var isTerminal: Bool {
        switch self {
        case .pending, .queued, .running: false
        case .completed, .failed, .canceled, .timedOut: true
        }
    }

    /// The order a task moves in; every terminal state has the same rank.
    var rank: Int {
        switch self {
        case .pending: 0
        case .queued: 1
        case .running: 2
        case .completed, .failed, .canceled, .timedOut: 3
        }
    }
}
