/// A status answer: where the request is, plus logs when asked for.
public struct FalStatus: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        case inQueue(position: Int?)
        case inProgress
        /// Done. A failed request is COMPLETED too, maybe with `error` and `error_type`;
        /// its error is what `result` returns.
        case completed(error: String?, errorType: String?)
        /// A status fal added after this client was written: not terminal.
        case unknown(String)
    }

    public struct Log: Sendable, Hashable, Codable {
        public var message: String
        public var level: String?
        public var timestamp: String?

        public init(message: String, level: String? = nil, timestamp: String? = nil) {
            self.message = message
            self.level = level
            self.timestamp = timestamp
        }

        private enum CodingKeys: String, CodingKey { case message, level, timestamp }

        /// `message` must be a string; a `level` or `timestamp` of another type is dropped.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            message = try container.decode(String.self, forKey: .message)
            level = try? container.decodeIfPresent(String.self, forKey: .level)
            timestamp = try? container.decodeIfPresent(String.self, forKey: .timestamp)
        }
    }

    public var state: State
    /// The HTTP status: 202 while queued or running, 200 when done.
    public var httpStatus: Int
    public var logs: [Log]
    /// `metrics.inference_time` in seconds, when reported.
    public var inferenceTime: Double?

    public init(state: State, httpStatus: Int = 200, logs: [Log] = [], inferenceTime: Double? = nil) {
        self.state = state
        self.httpStatus = httpStatus
        self.logs = logs
        self.inferenceTime = inferenceTime
    }

    /// True only for COMPLETED.
    public var isTerminal: Bool {
        if case .completed = state { return true }
        return false
    }
}
