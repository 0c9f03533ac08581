import Fal
import Foundation
import NIOCore

/// One change of one job, as the hub hands it to subscribers: parsed once per instance, with its
/// SSE frame (`event: job`, `id:`, one `data:` line) encoded once and shared by every subscriber,
/// both as an HTTP/1.1 chunk (`chunk`, what a stream on its channel writes as is) and as the bare
/// frame (`frame`, a slice of the same bytes, for a response body writer that frames chunks itself).
/// A class: handing it to each subscriber's buffer costs one reference, not a copy of its fields.
final class JobChange: Sendable {
    let jobID: String
    /// The owner, when known (always for published changes; nil for some catch-up reads).
    let userID: String?
    let id: StreamID
    /// `status` of the view.
    let status: String
    /// The job is finished and none of its tasks can still change (see `Head.isFinished`).
    let isFinished: Bool
    let chunk: ByteBuffer
    let frame: ByteBuffer
    /// The W3C `traceparent` of the span that published it (tracing on at the writer).
    let traceparent: String?
    /// The job's version after this change (the view's `version`), when the view says.
    let version: Int?
    /// Handed out by the instance that stored it, straight from its write (`EventHub.deliverWritten`),
    /// ahead of the events channel: a stream takes it only as the very next version of the job
    /// it sent last, and otherwise waits for the channel, which brings every change in order.
    let isLocal: Bool

    init(jobID: String, userID: String?, id: StreamID, view: [UInt8], traceparent: String? = nil, isLocal: Bool = false) {
        self.jobID = jobID
        self.userID = userID
        self.id = id
        self.traceparent = traceparent
        self.isLocal = isLocal
        let head = Head(view: view)
        self.status = head?.status ?? ""
        self.isFinished = head?.isFinished ?? false
        self.version = head?.version
        let frame = ServerSentEvent.frame(event: "job", id: id.description, data: view)
        self.chunk = HTTPChunk.wrap(frame)
        self.frame = HTTPChunk.payload(of: chunk)
    }

    /// The same change with its own copy of the bytes (for another event loop's streams).
    init(copying other: JobChange) {
        self.jobID = other.jobID
        self.userID = other.userID
        self.id = other.id
        self.status = other.status
        self.isFinished = other.isFinished
        self.traceparent = other.traceparent
        self.version = other.version
        self.isLocal = other.isLocal
        var chunk = ByteBuffer()
        chunk.reserveCapacity(other.chunk.readableBytes)
        chunk.writeImmutableBuffer(other.chunk)
        self.chunk = chunk
        self.frame = HTTPChunk.payload(of: chunk)
    }

    /// A message of the `clapper:events` channel: `{"jobId":…,"userId":…,"id":"…","job":<view>}`
    /// (then `"traceparent":"…"` when the writer traces, `"version":n`, and `"doc":<doc>` for a job
    /// in flight), as `JobScripts.apply` publishes it. One scan of the bytes (no decoding of the
    /// view); the view is sliced out byte for byte.
    convenience init?(message payload: [UInt8], presign links: MediaLinks = .off) {
        guard let envelope = Envelope(message: payload) else { return nil }
        self.init(envelope, presign: links)
    }

    /// The change of a message already read as far as routing needs.
    convenience init(_ envelope: Envelope, presign links: MediaLinks = .off) {
        self.init(
            jobID: envelope.jobID,
            userID: envelope.userID,
            id: envelope.id,
            view: links.presigned(Array(envelope.view)),
            traceparent: envelope.traceparent
        )
    }

    /// A published message read only as far as routing needs (one scan, the view sliced out, not
    /// read): an instance with no stream of the job or its owner stops here, before the view is
    /// parsed or a frame encoded.
    struct Envelope {
        let jobID: String
        let userID: String
        let id: StreamID
        let view: ArraySlice<UInt8>
        let traceparent: String?
        /// The version this change made, and its stored document when the job is still in flight
        /// (what `JobCache` keeps); absent in messages of writers that predate them.
        let version: Int?
        let doc: ArraySlice<UInt8>?

        init?(message payload: [UInt8]) {
            guard let members = try? RawJSON.members(of: payload) else { return nil }
            var jobID: String?
            var userID: String?
            var id: StreamID?
            var view: ArraySlice<UInt8>?
            var traceparent: String?
            var version: Int?
            var doc: ArraySlice<UInt8>?
            for member in members {
                switch member.key {
                case "jobId": jobID = RawJSON.string(member.value)
                case "userId": userID = RawJSON.string(member.value)
                case "id": id = RawJSON.string(member.value).flatMap(StreamID.init)
                case "job": view = member.value
                case "traceparent": traceparent = RawJSON.string(member.value)
                case "version": version = JobChange.parseVersion(member.value)
                case "doc": doc = member.value
                default: continue
                }
            }
            guard let jobID, let userID, let id, let view else { return nil }
            self.jobID = jobID
            self.userID = userID
            self.id = id
            self.view = view
            self.traceparent = traceparent
            self.version = version
            self.doc = doc
        }
    }

    /// What the streams read from a view: its status and its tasks' statuses.
    struct Head {
        let status: String
        let videoStatus: String?
        let audioStatus: String?
        /// A copy into the operator's bucket is still owed (media custody): `…Stored` false, no error.
        let storeOwed: Bool
        /// The job's version (`version`), when the view has a positive one.
        let version: Int?

        static let finishedStatuses: Set<String> = ["completed", "failed", "canceled"]
        static let terminalTaskStatuses: Set<String> = ["completed", "failed", "canceled", "timed_out"]

        init?(view: [UInt8]) {
            guard let members = try? RawJSON.members(of: view) else { return nil }
            var status: String?
            var videoStatus: String?
            var audioStatus: String?
            var unstored: Set<String> = []
            var storeErrors: Set<String> = []
            var version: Int?
            for member in members {
                switch member.key {
                case "status": status = RawJSON.string(member.value)
                case "version": version = JobChange.parseVersion(member.value)
                case "videoStatus": videoStatus = RawJSON.string(member.value)
                case "audioStatus": audioStatus = RawJSON.string(member.value)
                case "videoStored", "audioStored", "mergeStored":
                    if member.value.elementsEqual("false".utf8) { unstored.insert(String(member.key.dropLast(6))) }
                case "videoStoreError", "audioStoreError", "mergeStoreError":
                    if !member.value.elementsEqual("null".utf8) { storeErrors.insert(String(member.key.dropLast(10))) }
                default: continue
                }
            }
            guard let status else { return nil }
            self.status = status
            self.videoStatus = videoStatus
            self.audioStatus = audioStatus
            self.version = version
            // `…Stored` is false only for completed media; with no error, the copy is still owed.
            self.storeOwed = !unstored.subtracting(storeErrors).isEmpty
        }

        /// `status` is finished (completed, failed, canceled) and no task is still pending, queued
        /// or running: a parallel audio task can still settle after the video failed, and its
        /// result must reach the stream before `done`.
        var isFinished: Bool {
            !storeOwed && Self.finishedStatuses.contains(status)
                && [videoStatus, audioStatus].allSatisfy { $0.map(Self.terminalTaskStatuses.contains) ?? true }
        }
    }

    /// A `version` member's value: a positive integer, else nil (never trapped on, however long).
    fileprivate static func parseVersion(_ value: ArraySlice<UInt8>) -> Int? {
        Int(String(decoding: value, as: UTF8.self)).flatMap { $0 > 0 ? $0 : nil }
    }
}
