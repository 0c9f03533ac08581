@testable import Clapper
import HTTPTypes
import NIOCore
import Testing

/// The frames a stream writes, without I/O (`StreamPump`), the chunk coding of streams written
/// straight to their channel (`HTTPChunk`), and which requests leave Hummingbird as streams.
@Suite("Event streams: frames, chunks and routes, without I/O")
struct StreamPumpTests {
    static func change(_ job: String, _ ms: UInt64, status: String = "running", user: String = "u") -> JobChange {
        JobChange(jobID: job, userID: user, id: StreamID(milliseconds: ms, sequence: 0), view: TestJobs.view(jobID: job, status: status, version: Int(ms)))
    }

    static func text(_ frames: [ByteBuffer]) -> String {
        frames.map { String(buffer: $0) }.joined()
    }

    @Test func aJobStreamOpensWithItsSnapshotSkipsWhatItSentAndEndsWithDone() {
        let history = EventHistory(userID: "u", view: TestJobs.view(jobID: "j", status: "running", version: 2), lastID: StreamID(milliseconds: 2, sequence: 0), start: .snapshot)
        var (pump, opening) = StreamPump.job(jobID: "j", history: history, chunked: false)
        #expect(Self.text(opening).hasPrefix("retry: \(EventsController.retryMilliseconds)\n\n"))
        #expect(Self.text(opening).contains("event: snapshot\nid: 2-0\n"))
        #expect(!pump.isFinished)
        var frames: [ByteBuffer] = []
        #expect(pump.take(Self.change("j", 2), into: &frames) == false)
        #expect(frames.isEmpty, "the change the snapshot holds is not sent again")
        #expect(pump.take(Self.change("j", 3), into: &frames) == false)
        #expect(Self.text(frames) == "event: job\nid: 3-0\ndata: \(String(decoding: TestJobs.view(jobID: "j", status: "running", version: 3), as: UTF8.self))\n\n")
        frames.removeAll()
        #expect(pump.take(Self.change("j", 4, status: "completed"), into: &frames) == true)
        #expect(Self.text(frames).hasSuffix("event: done\ndata: {\"jobId\":\"j\",\"status\":\"completed\"}\n\n"))
        frames.removeAll()
        #expect(pump.take(Self.change("j", 5), into: &frames) == true)
        #expect(frames.isEmpty, "nothing after done")
    }

    @Test func aFinishedJobOpensWithDone() {
        let history = EventHistory(userID: "u", view: TestJobs.view(jobID: "j", status: "failed", version: 3), lastID: nil, start: .replay([]))
        let (pump, opening) = StreamPump.job(jobID: "j", history: history, chunked: false)
        #expect(pump.isFinished)
        #expect(Self.text(opening).hasSuffix("event: done\ndata: {\"jobId\":\"j\",\"status\":\"failed\"}\n\n"))
    }

    @Test func aUserStreamSendsEachJobsNewChangesAndNothingBelowItsFloorLive() {
        let floor = EventSubscription.Floor(jobID: "a", id: StreamID(milliseconds: 100, sequence: 0))
        var (pump, opening) = StreamPump.user(replay: [Self.change("a", 90), Self.change("b", 95)], floor: floor, chunked: false)
        #expect(Self.text(opening).contains("id: 90-0"))
        #expect(Self.text(opening).contains("id: 95-0"))
        var frames: [ByteBuffer] = []
        _ = pump.take(Self.change("c", 50), into: &frames)  // older than the floor: a catch-up's
        _ = pump.take(Self.change("a", 100), into: &frames)  // the floor itself: already out
        _ = pump.take(Self.change("b", 95), into: &frames)  // sent with the replay
        #expect(frames.isEmpty)
        #expect(pump.take(Self.change("b", 101), into: &frames) == false)
        #expect(Self.text(frames).contains("id: 101-0"))
    }

    /// A change as its writer hands it out, ahead of the channel (`JobChange.isLocal`).
    static func local(_ job: String, _ ms: UInt64, status: String = "running", user: String = "u") -> JobChange {
        JobChange(jobID: job, userID: user, id: StreamID(milliseconds: ms, sequence: 0), view: TestJobs.view(jobID: job, status: status, version: Int(ms)), isLocal: true)
    }

    /// The writer's copy of a change goes out at once when it is the job's next version, and the
    /// channel's copy of it is then dropped; one that skips a version (another writer's change is
    /// still on its way through the channel) waits for the channel, which brings both in order.
    @Test func aJobStreamTakesItsWritersCopyOnlyAsTheNextVersion() {
        let history = EventHistory(userID: "u", view: TestJobs.view(jobID: "j", status: "running", version: 2), lastID: StreamID(milliseconds: 2, sequence: 0), start: .snapshot)
        var (pump, _) = StreamPump.job(jobID: "j", history: history, chunked: false)
        var frames: [ByteBuffer] = []
        #expect(pump.take(Self.local("j", 3), into: &frames) == false)
        #expect(Self.text(frames).contains("id: 3-0"), "version 3 follows the snapshot's 2")
        frames.removeAll()
        _ = pump.take(Self.change("j", 3), into: &frames)
        #expect(frames.isEmpty, "the channel's copy of 3 is not sent again")

        _ = pump.take(Self.local("j", 5), into: &frames)
        #expect(frames.isEmpty, "5 skips 4, which is still on its way")
        _ = pump.take(Self.change("j", 4), into: &frames)
        _ = pump.take(Self.change("j", 5), into: &frames)
        #expect(Self.text(frames).components(separatedBy: "event: job\n").dropFirst().map { $0.prefix(8) } == ["id: 4-0\n", "id: 5-0\n"])
    }

    @Test func aUserStreamTakesItsWritersCopyOnlyAsTheNextVersionOfThatJob() {
        var (pump, _) = StreamPump.user(replay: [], floor: nil, chunked: false)
        var frames: [ByteBuffer] = []
        _ = pump.take(Self.local("new", 1), into: &frames)
        #expect(Self.text(frames).contains("id: 1-0"), "a job's first version follows nothing")
        frames.removeAll()
        _ = pump.take(Self.local("seen", 7), into: &frames)
        #expect(frames.isEmpty, "a job this stream has not sent yet waits for the channel")
        _ = pump.take(Self.change("seen", 7), into: &frames)
        _ = pump.take(Self.local("seen", 8), into: &frames)
        _ = pump.take(Self.change("seen", 8), into: &frames)
        _ = pump.take(Self.change("new", 1), into: &frames)
        #expect(Self.text(frames).components(separatedBy: "event: job\n").dropFirst().map { $0.prefix(8) } == ["id: 7-0\n", "id: 8-0\n"])
    }

    @Test func chunkedFramesAreWholeChunksAndAChangesFrameIsItsChunksPayload() {
        let change = Self.change("j", 7)
        let frame = String(buffer: change.frame)
        #expect(String(buffer: change.chunk) == String(frame.utf8.count, radix: 16) + "\r\n" + frame + "\r\n")
        #expect(frame.hasPrefix("event: job\nid: 7-0\n"))
        let history = EventHistory(userID: "u", view: TestJobs.view(jobID: "j", status: "queued", version: 1), lastID: nil, start: .snapshot)
        let (_, opening) = StreamPump.job(jobID: "j", history: history, chunked: true)
        #expect(opening.count == 1)
        let (_, bare) = StreamPump.job(jobID: "j", history: history, chunked: false)
        #expect(opening.first.map { String(buffer: HTTPChunk.payload(of: $0)) } == Self.text(bare))
        #expect(HTTPChunk.wrap([ByteBuffer(), ByteBuffer()]).readableBytes == 0, "an empty chunk would end the body")
        let copy = JobChange(copying: change)
        #expect(copy.chunk == change.chunk && copy.frame == change.frame && copy.id == change.id && copy.isFinished == change.isFinished)
        #expect(String(buffer: StreamPump.heartbeatChunk) == "d\r\n: heartbeat\n\n\r\n")
    }

    @Test func theDateHeaderIsAnIMFFixdate() {
        #expect(HTTPDate.format(secondsSince1970: 784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.format(secondsSince1970: 1_796_083_200) == "Tue, 01 Dec 2026 00:00:00 GMT")
        #expect(HTTPDate.now.hasSuffix(" GMT"))
    }

    @Test(arguments: [
        ("GET", "/v1/events", true), ("GET", "/v1/events?token=x", true), ("GET", "/v1/jobs/abc/events", true),
        ("GET", "/v1/jobs/abc/events?lastEventId=1-0", true), ("HEAD", "/v1/events", false), ("OPTIONS", "/v1/events", false),
        ("GET", "/v1/jobs//events", false), ("GET", "/v1/jobs/a/b/events", false), ("GET", "/v1/jobs/abc", false),
        ("GET", "/v1/eventsx", false), ("GET", "/healthz", false), ("POST", "/v1/jobs/abc/events", false),
    ])
    func whichRequestsLeaveHummingbirdAsStreams(method: String, path: String, stream: Bool) throws {
        let head = HTTPRequest(method: try #require(HTTPRequest.Method(method)), scheme: nil, authority: nil, path: path)
        #expect(EventStreamServer.isStream(head) == stream)
    }
}
