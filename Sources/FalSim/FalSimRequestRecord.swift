public import Foundation

/// Ground truth about one submit fal-sim received.
public struct FalSimRequestRecord: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable {
        case inQueue = "IN_QUEUE"
        case inProgress = "IN_PROGRESS"
        case completed = "COMPLETED"
        /// The submit was answered with an error fault (429/500/503): no job exists.
        case rejected = "REJECTED"
    }

    public enum Outcome: String, Sendable, Codable {
        case ok
        case error
        case canceled
        case rejected
    }

    /// One webhook delivery attempt.
    public struct Delivery: Sendable, Codable, Equatable {
        /// 1 for the first try, up to 10.
        public var attempt: Int
        /// 1, or 2 for the second copy of `duplicate-webhook`.
        public var copy: Int
        /// The receiver's HTTP status; nil when the connection failed.
        public var statusCode: Int?
        /// The connection error, if any.
        public var error: String?
        public var at: Date
    }

    /// The request id (a lowercase UUID).
    public var id: String
    public var model: String
    /// The submitted body, as received (UTF-8).
    public var input: String
    public var webhookURL: String?
    public var state: State
    public var outcome: Outcome?
    /// The HTTP status the submit was (or, for `submit-stall`, would have been) answered with.
    public var submitStatus: Int
    /// The fault names applied (run, header and rule faults).
    public var faults: [String]
    public var receivedAt: Date
    public var completedAt: Date?
    /// The webhook body, byte for byte, once built.
    public var webhookBody: String?
    /// Every delivery attempt, in the order they ended.
    public var deliveries: [Delivery]
    /// fal's optional submit headers as received, by lowercase name (`optionHeaders`).
    public var options: [String: String] = [:]
    /// When it started running (IN_PROGRESS); nil while queued or when it never ran.
    public var startedAt: Date?
    /// How many status requests were answered for it (polls; the status stream not counted).
    public var statusPolls = 0

    /// The submit headers fal documents as options: queue priority, start deadline, media lifetime.
    public static let optionHeaders = ["x-fal-queue-priority", "x-fal-request-timeout", "x-fal-object-lifecycle-preference"]
}
