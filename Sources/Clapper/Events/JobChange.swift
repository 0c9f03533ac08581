import Foundation
import NIOCore

/// One change of one job, as the hub hands it to subscribers: parsed once per instance, with its
/// SSE frame (`event: job`, `id:`, one `data:` line) encoded once and shared by every subscriber.
struct JobChange: Sendable {
    let jobID: String
    /// The owner, when known (always for published changes; nil for some catch-up reads).
    let userID: String?
    let id: StreamID
    /// `status` of the view.
    let status: String
    /// The job is finished and none of its tasks can still change (see `Head.isFinished`).
    let isFinished: Bool
    let frame: ByteBuffer

    init(jobID: String, userID: String?, id: StreamID, view: [UInt8]) {
        self.jobID = jobID
        self.userID = userID
        self.id = id
        let head = Head(view: view)
        self.status = head?.status ?? ""
        self.isFinished = head?.isFinished ?? false
        self.frame = ServerSentEvent.frame(event: "job", id: id.description, data: view)
    }

    /// A message of the `clapper:events` channel: `{"jobId":…,"userId":…,"id":"…","job":<view>}`,
    /// as `JobScripts.apply` publishes it. The view is sliced out byte for byte.
    init?(message payload: [UInt8]) {
        struct Header: Decodable {
            let jobId: String
            let userId: String
            let id: String
        }
        guard let header = try? JSONDecoder().decode(Header.self, from: Data(payload)),
              let id = StreamID(header.id),
              let view = Self.slice(payload, after: Array(#","job":"#.utf8))
        else { return nil }
        self.init(jobID: header.jobId, userID: header.userId, id: id, view: view)
    }

    /// The bytes after the first `marker` up to the closing `}` of the message. The marker's
    /// quotes are unescaped, so it cannot occur inside the JSON strings before it.
    private static func slice(_ payload: [UInt8], after marker: [UInt8]) -> [UInt8]? {
        guard payload.count > marker.count, payload.last == UInt8(ascii: "}") else { return nil }
        var index = 0
        let end = payload.count - marker.count
        while index <= end {
            if payload[index] == marker[0], Array(payload[index..<index + marker.count]) == marker {
                let start = index + marker.count
                return start < payload.count - 1 ? Array(payload[start..<payload.count - 1]) : nil
            }
            index += 1
        }
        return nil
    }

    /// What the streams read from a view: its status and its tasks' statuses.
    struct Head: Decodable {
        let status: String
        let videoStatus: String?
        let audioStatus: String?

        static let finishedStatuses: Set<String> = ["completed", "failed", "canceled"]
        static let terminalTaskStatuses: Set<String> = ["completed", "failed", "canceled", "timed_out"]

        init?(view: [UInt8]) {
            guard let head = try? JSONDecoder().decode(Head.self, from: Data(view)) else { return nil }
            self = head
        }

        /// `status` is finished (completed, failed, canceled) and no task is still pending, queued
        /// or running: a parallel audio task can still settle after the video failed, and its
        /// result must reach the stream before `done`.
        var isFinished: Bool {
            Self.finishedStatuses.contains(status)
                && [videoStatus, audioStatus].allSatisfy { $0.map(Self.terminalTaskStatuses.contains) ?? true }
        }
    }
}
