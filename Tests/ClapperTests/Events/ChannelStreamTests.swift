@testable import Clapper
import Foundation
import NIOCore
import NIOPosix
import Testing

/// Event streams leave Hummingbird's per-connection task once answered: the router and its
/// middleware answer the request, then the connection is a `ChannelStream` written on its event
/// loop, its body chunked by hand. Read here byte for byte over a raw socket.
@Suite("Event streams written on their channel")
struct ChannelStreamTests {
    static func get(_ path: String, _ extra: String = "") -> ByteBuffer {
        ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: clapper\r\n\(extra)\r\n")
    }

    /// The first request of a connection: a chunked `text/event-stream` with the middleware's
    /// headers, the snapshot, a live change, `done`, the last chunk, and the connection closed; the
    /// hub held a `ChannelStream` for it and lets go of it at the end.
    @Test(.timeLimit(.minutes(1)))
    func aStreamOnAFreshConnectionIsChunkedOnItsChannelAndEndsWithTheJob() async throws {
        try await withGateway(.noFal()) { context in
            let user = uniqueID("raw")
            let job = uniqueID()
            try await context.jobs.create(job, user: user)
            let connection = try await RawConnection.open(port: context.port)
            try await connection.run { inbound, outbound in
                try await outbound.write(Self.get(context.jobs.jobPath(job, user: user), "X-Request-Id: raw-stream-1\r\n"))
                let opening = try await inbound.read(until: "event: snapshot")
                let head = opening.lowercased()
                #expect(head.hasPrefix("http/1.1 200 ok\r\n"))
                #expect(head.contains("transfer-encoding: chunked\r\n"))
                #expect(head.contains("content-type: text/event-stream"))
                #expect(head.contains("x-request-id: raw-stream-1\r\n"), "the middleware answered it")
                #expect(!head.contains("content-length"))
                #expect(head.contains("\r\ndate: ") && head.contains(" gmt\r\n"))
                let targets = context.hub.targets(jobID: job)
                #expect(targets.count == 1)
                #expect(targets.first is ChannelStream)
                try await context.jobs.write(job, user: user, from: 1, status: "completed")
                let rest = await inbound.readToClose()
                #expect(rest.contains("event: job\nid: "))
                #expect(rest.contains("event: done\n"))
                #expect(rest.hasSuffix("\r\n0\r\n\r\n"), "the body ends with the last chunk: \(rest)")
            }
            try await eventually("the hub to let go of the stream") { context.hub.targets(jobID: job).isEmpty }
        }
    }

    /// A keep-alive connection that served a plain request first still gets its stream.
    @Test(.timeLimit(.minutes(1)))
    func aStreamAfterAPlainRequestOnTheSameConnection() async throws {
        try await withGateway(.noFal()) { context in
            let user = uniqueID("keepalive")
            let connection = try await RawConnection.open(port: context.port)
            try await connection.run { inbound, outbound in
                try await outbound.write(Self.get("/healthz"))
                let health = try await inbound.read(until: "\r\n\r\n")
                #expect(health.hasPrefix("HTTP/1.1 200"))
                try await outbound.write(Self.get(context.jobs.userPath(user)))
                let opening = try await inbound.read(until: ": connected")
                #expect(opening.contains("HTTP/1.1 200 OK\r\n"))
                #expect(opening.lowercased().contains("transfer-encoding: chunked"))
                try await eventually("the user's stream in the hub") { context.hub.targets(userID: user).first is ChannelStream }
                let job = uniqueID()
                try await context.jobs.create(job, user: user)
                let event = try await inbound.read(until: "\"jobId\":\"\(job)\"")
                #expect(event.contains("event: job\n"))
            }
            try await eventually("the hub to let go of the stream") { context.hub.targets(userID: user).isEmpty }
        }
    }

    /// A refused stream is a whole JSON error with `Connection: close`, and the connection closes.
    @Test(.timeLimit(.minutes(1)))
    func aRefusedStreamIsAWholeJSONErrorAndTheConnectionCloses() async throws {
        try await withGateway(.noFal()) { context in
            let connection = try await RawConnection.open(port: context.port)
            try await connection.run { inbound, outbound in
                try await outbound.write(Self.get("/v1/events?token=forged"))
                let reply = await inbound.readToClose()
                let lower = reply.lowercased()
                #expect(lower.hasPrefix("http/1.1 401"))
                #expect(lower.contains("connection: close\r\n"))
                #expect(lower.contains("content-type: application/json"))
                let body = reply.components(separatedBy: "\r\n\r\n").dropFirst().joined()
                #expect(lower.contains("content-length: \(body.utf8.count)\r\n"))
                #expect(body.contains("\"code\":\"invalid_token\""))
            }
        }
    }

    /// A client that half-closes its side (it will read no more) ends its stream at once.
    @Test(.timeLimit(.minutes(1)))
    func aClientThatHalfClosesEndsItsStream() async throws {
        try await withGateway(.noFal()) { context in
            let user = uniqueID("halfclose")
            let connection = try await RawConnection.open(port: context.port)
            try await connection.run { inbound, outbound in
                try await outbound.write(Self.get(context.jobs.userPath(user)))
                _ = try await inbound.read(until: ": connected")
                #expect(context.hub.targets(userID: user).count == 1)
                try await connection.channel.channel.close(mode: .output)
                _ = await inbound.readToClose()
            }
            try await eventually("the hub to let go of the stream") { context.hub.targets(userID: user).isEmpty }
        }
    }

    /// More streams of one job than its loop writes at once (`LoopDelivery.inlineLimit`), and
    /// changes written back to back: they are queued per loop and written in passes, one flush per
    /// stream a pass. Every stream still gets every change, once, in order, then `done`.
    @Test(.timeLimit(.minutes(1)))
    func queuedChangesReachEveryStreamOfAJobOnceAndInOrder() async throws {
        try await withGateway(.noFal({ $0.sseMaxStreamsPerUser = 0 })) { context in
            let user = uniqueID("many")
            let job = uniqueID()
            try await context.jobs.create(job, user: user)
            let streamCount = LoopDelivery.inlineLimit * 3
            let changes = 40
            var readers: [SSEReader] = []
            for _ in 0..<streamCount {
                let reader = try await context.open(context.jobs.jobPath(job, user: user))
                #expect(try await reader.nextEvent()?.event == "snapshot")
                readers.append(reader)
            }
            try await eventually("every stream in the hub") { context.hub.targets(jobID: job).count == streamCount }
            for version in 1...changes {
                try await context.jobs.write(job, user: user, from: version, status: version == changes ? "completed" : "running")
            }
            for reader in readers {
                var versions: [Int] = []
                while let frame = try await reader.nextEvent(), frame.event == "job" {
                    let view = try #require(try JSONSerialization.jsonObject(with: Data((frame.data ?? "").utf8)) as? [String: Any])
                    versions.append(try #require(view["version"] as? Int))
                }
                #expect(versions == Array(2...(changes + 1)))
            }
            try await eventually("the hub to let go of the streams") { context.hub.targets(jobID: job).isEmpty }
        }
    }

    /// Heartbeats come from each loop's schedule: every idle stream gets them, and a stream that
    /// ended leaves its loop's schedule when its entry comes up (nothing stays queued for it).
    @Test(.timeLimit(.minutes(1)))
    func everyIdleStreamGetsHeartbeatsAndEndedStreamsLeaveTheSchedule() async throws {
        try await withGateway(.noFal({ $0.sseHeartbeat = .seconds(1) })) { context in
            let user = uniqueID("beats")
            let job = uniqueID()
            try await context.jobs.create(job, user: user)
            var readers: [SSEReader] = []
            for _ in 0..<20 {
                let reader = try await context.open(context.jobs.jobPath(job, user: user))
                #expect(try await reader.nextEvent()?.event == "snapshot")
                readers.append(reader)
            }
            for reader in readers {
                let beat = try #require(try await reader.next())
                #expect(beat.comment == "heartbeat")
            }
            let hub = context.hub
            func queued() async throws -> Int {
                var total = 0
                for loop in MultiThreadedEventLoopGroup.singleton.makeIterator() {
                    total += try await loop.submit { hub.heartbeats(on: loop).count }.get()
                }
                return total
            }
            #expect(try await queued() >= 20)
            readers = []
            try await eventually("the hub to let go of the streams") { hub.targets(jobID: job).isEmpty }
            try await eventually("the schedules to let go of the ended streams") { try await queued() == 0 }
        }
    }

    /// Changes that pile up for one stream while its loop is busy go out in one pass, more than
    /// the channel's 64 KiB high-water mark of them: what the pass has not flushed yet counts
    /// toward that mark, and must not make a client that reads fine look like one that fell behind.
    @Test(.timeLimit(.minutes(1)))
    func aPileOfChangesBiggerThanTheHighWaterMarkReachesAReadingClient() async throws {
        try await withGateway(.noFal()) { context in
            let user = uniqueID("pile")
            let job = uniqueID()
            try await context.jobs.create(job, user: user)
            let reader = try await context.open(context.jobs.jobPath(job, user: user))
            #expect(try await reader.nextEvent()?.event == "snapshot")
            try await eventually("the stream in the hub") { context.hub.targets(jobID: job).first is ChannelStream }
            let stream = try #require(context.hub.targets(jobID: job).first as? ChannelStream)
            let prompt = String(repeating: "p", count: 2048)
            let changes = 60  // about 125 KB
            let start = UInt64(Date().timeIntervalSince1970 * 1000) + 60_000
            let pile = (2...(changes + 1)).map { version in
                JobChange(jobID: job, userID: user, id: StreamID(milliseconds: start, sequence: UInt64(version)),
                          view: TestJobs.view(jobID: job, status: "running", version: version, prompt: prompt))
            }
            // One pass of the loop's delivery (`LoopDelivery.drain`): every change written, one flush.
            try await stream.loop.submit {
                var owed = false
                for change in pile where stream.write(change) { owed = true }
                if owed { stream.flush() }
            }.get()
            var versions: [Int] = []
            while versions.count < changes, let frame = try await reader.next() {
                guard frame.event == "job" else { continue }
                versions.append(frame.view?.version ?? -1)
            }
            #expect(versions == Array(2...(changes + 1)))
            #expect(context.hub.targets(jobID: job).count == 1, "the stream is still subscribed")
        }
    }
}
