@testable import Clapper
import Foundation
import NIOCore
import Testing

@Suite("Events: encoding, ids and tokens")
struct EventsEncodingTests {
    /// The metrics backend first: a metric handle made before it (these suites build no gateway)
    /// would count into nothing for the rest of the process, and LatencyHistogramTests reads them.
    init() { _ = ClapperMetrics.registry }

    @Test func dataIsAlwaysOneLine() {
        let data = Array(#"{"prompt":"a"#.utf8) + [0x0A, 0x0D] + Array("b\u{2028}c\u{2029}d\u{85}e\r\nf".utf8) + Array(#""}"#.utf8)
        let frame = String(buffer: ServerSentEvent.frame(event: "job", id: "1-0", data: data))
        let lines = frame.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 5)
        #expect(lines[0] == "event: job")
        #expect(lines[1] == "id: 1-0")
        #expect(lines[2].hasPrefix("data: "))
        #expect(lines[3].isEmpty && lines[4].isEmpty)
        #expect(!frame.contains("\r") && !frame.contains("\u{2028}") && !frame.contains("\u{2029}") && !frame.contains("\u{85}"))
        #expect(lines[2].contains(#"b\u2028c\u2029d\u0085e"#))
    }

    @Test func viewsFromJobViewStayValidJSON() throws {
        let view = Array(#"{"prompt":"x\u2028y","raw":{"n":1}}"#.utf8) + Array("\n".utf8)
        let frame = String(buffer: ServerSentEvent.frame(event: "snapshot", data: view))
        let data = try #require(frame.split(separator: "\n").first { $0.hasPrefix("data: ") }).dropFirst(6)
        let object = try JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any]
        #expect(object?["prompt"] as? String == "x\u{2028}y")
    }

    @Test func streamIDsParseAndOrder() {
        #expect(StreamID("1700000000000-3") == StreamID(milliseconds: 1_700_000_000_000, sequence: 3))
        for bad in ["", "1", "1-", "-1", "a-1", "1-2-3", " 1-2", "+1-2", "99999999999999999999999-0", "$"] {
            #expect(StreamID(bad) == nil, "\(bad)")
        }
        #expect(StreamID("5-10")! > StreamID("5-9")!)
        #expect(StreamID("6-0")! > StreamID("5-99")!)
    }

    @Test func publishedMessagesSliceTheViewByteForByte() throws {
        let view = #"{"jobId":"j\",\"job\":1","status":"completed","version":3,"videoOutput":{"n":123456789012345678901234567890}}"#
        let payload = Array(#"{"jobId":"j\",\"job\":1","userId":"u","id":"17-2","job":\#(view)}"#.utf8)
        let change = try #require(JobChange(message: payload))
        #expect(change.jobID == #"j","job":1"#)
        #expect(change.userID == "u")
        #expect(change.id == StreamID("17-2"))
        #expect(change.isFinished)
        #expect(String(buffer: change.frame) == "event: job\nid: 17-2\ndata: \(view)\n\n")
    }

    @Test func tokensAreScopedSignedAndShortLived() throws {
        let signer = EventTokenSigner(secret: "0123456789abcdef-secret", lifetime: 60)
        let now = Date()
        let token = signer.token(scope: .job("job-1"), userID: "u|1", now: now)
        let claims = try #require(signer.verify(token, now: now))
        #expect(claims.scope == .job("job-1"))
        #expect(claims.userID == "u|1")
        #expect(signer.verify(token, now: now.addingTimeInterval(61)) == nil)
        #expect(EventTokenSigner(secret: "another-secret-0123456").verify(token, now: now) == nil)
        #expect(signer.verify(token + "A", now: now) == nil)
        #expect(signer.verify("", now: now) == nil)
        #expect(signer.verify("a.b.c", now: now) == nil)
        #expect(signer.verify(signer.token(scope: .user, userID: "u", now: now), now: now)?.scope == .user)
        let url = signer.eventsURL(base: "http://h:1/", jobID: "job 1", userID: "u", now: now)
        #expect(url.hasPrefix("http://h:1/v1/jobs/job%201/events?token="))
        #expect(signer.verify(String(url.split(separator: "=", maxSplits: 1)[1]), now: now)?.scope == .job("job 1"))
    }
}
