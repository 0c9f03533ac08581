/// Where a task stands at fal while it is in flight, from fal's status with logs: its place in
/// the queue and the last few lines the model printed. Bounded whatever fal sends: at most
/// `maxLines` lines, each cut to `maxLineBytes` of UTF-8, so a log storm at fal costs one small,
/// fixed-size field (and one change per poll at most, see `ProgressPolicy`).
public struct TaskProgress: Codable, Sendable, Hashable {
    /// One line fal logged for the request.
    public struct LogLine: Codable, Sendable, Hashable {
        public var message: String
        /// fal's level (`INFO`, `ERROR`, …), cut to 16 bytes.
        public var level: String?
        /// fal's timestamp as fal wrote it, cut to 40 bytes.
        public var timestamp: String?

        public init(message: String, level: String? = nil, timestamp: String? = nil) {
            self.message = TaskProgress.cut(message, toBytes: TaskProgress.maxLineBytes)
            self.level = level.map { TaskProgress.cut($0, toBytes: 16) }
            self.timestamp = timestamp.map { TaskProgress.cut($0, toBytes: 40) }
        }
    }

    /// fal's `queue_position` while the request waits (0: next to start); nil once it runs.
    public var queuePosition: Int?
    /// The newest `maxLines` log lines, oldest first.
    public var logs: [LogLine]

    /// Lines kept per task.
    public static let maxLines = 5
    /// UTF-8 bytes kept per line (a longer one is cut at a character boundary, with "…").
    public static let maxLineBytes = 500

    /// Keeps only the newest `maxLines` of `logs` (each already bounded by `LogLine`).
    public init(queuePosition: Int? = nil, logs: [LogLine] = []) {
        self.queuePosition = queuePosition
        self.logs = Array(logs.suffix(Self.maxLines))
    }

    public var isEmpty: Bool { queuePosition == nil && logs.isEmpty }

    /// At most `limit` bytes of `text`, cut at a Unicode scalar boundary, "…" added when cut.
    static func cut(_ text: String, toBytes limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        let ellipsis = "…"
        var kept = String.UnicodeScalarView()
        var bytes = 0
        for scalar in text.unicodeScalars {
            let size = String(scalar).utf8.count
            guard bytes + size + ellipsis.utf8.count <= limit else { break }
            kept.append(scalar)
            bytes += size
        }
        return String(kept) + ellipsis
    }
}
