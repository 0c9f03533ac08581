@testable import Clapper
import Foundation
import Testing

/// The hand-written job document against the synthesized Codable form it replaced (dates as
/// milliseconds since 1970): on random jobs, each reads what the other writes, and every way
/// round gives the job that Codable's own round trip gives.
@Suite("Job document: the same JSON as Codable, read and written by hand")
struct JobDocumentTests {
    /// The coders the store used for jobs before (still its coders for other records).
    static var encoder: JSONEncoder { JobStore.encoder }
    static var decoder: JSONDecoder { JobStore.decoder }

    @Test func randomJobsReadTheSameEveryWayRound() throws {
        for _ in 0..<2_000 {
            let job = RandomJob.make()
            let codable = try Self.encoder.encode(job)
            let ours = try JobDocument.encode(job)
            // What the store read before: Codable's round trip (a date can move by an ulp).
            let expected = try Self.decoder.decode(Job.self, from: codable)
            #expect(try JobDocument.decode(ours) == expected, "\(String(decoding: ours, as: UTF8.self))")
            #expect(try Self.decoder.decode(Job.self, from: Data(ours)) == expected, "\(String(decoding: ours, as: UTF8.self))")
            #expect(try JobDocument.decode(Array(codable)) == expected, "\(String(decoding: codable, as: UTF8.self))")
        }
    }

    @Test func aJobThroughItsLifeReadsBackWhole() throws {
        var job = JobFixture.job(mode: .afterVideo)
        job.metadata = #"{"a":1,"b":"naïve \"q\" 🎬"}"#
        job.videoOptions = VideoOptions(aspectRatio: "16:9", resolution: "720p", seed: -42, negativePrompt: "blur\nline")
        let t1 = JobFixture.t0.addingTimeInterval(1.2345)
        _ = job.apply(.video, .submitStarted(attempt: "a1"), at: t1)
        _ = job.apply(.video, JobFixture.accepted("r1"), at: t1)
        _ = job.apply(.video, .progress(TaskProgress(queuePosition: 3, logs: [.init(message: "step 1", level: "INFO", timestamp: "t")])), at: t1)
        _ = job.apply(.video, .failed(TaskError(code: "fal_error", message: "422", detail: "{\"x\":1}")), at: t1)
        _ = job.apply(.video, .retry, at: t1)
        _ = job.apply(.video, .completed(mediaURL: "https://v/1.mp4"), at: t1)
        let decoded = try JobDocument.decode(try JobDocument.encode(job))
        #expect(decoded == (try Self.decoder.decode(Job.self, from: Self.encoder.encode(job))))
        #expect(decoded.video.status == .completed && decoded.video.mediaURL == "https://v/1.mp4" && decoded.metadata == job.metadata)
        #expect(decoded.video.previousRequestIDs == ["r1"])
    }

    @Test func aDocumentMissingARequiredMemberOrOfTheWrongTypeIsRefusedByName() throws {
        let doc = try JobDocument.encode(JobFixture.job())
        let object = try #require(try JSONSerialization.jsonObject(with: Data(doc)) as? [String: Any])
        for key in ["id", "createdAt", "video", "feature"] {
            var broken = object
            broken[key] = nil
            let bytes = Array(try JSONSerialization.data(withJSONObject: broken))
            let error = #expect(throws: JobDocument.Invalid.self) { try JobDocument.decode(bytes) }
            #expect(error?.path == key)
        }
        var wrongType = object
        var video = try #require(object["video"] as? [String: Any])
        video["status"] = "flying"
        wrongType["video"] = video
        let error = #expect(throws: JobDocument.Invalid.self) { try JobDocument.decode(Array(try JSONSerialization.data(withJSONObject: wrongType))) }
        #expect(error?.path == "video.status")
        var hugeVersion = object
        hugeVersion["version"] = 1e300
        #expect(throws: JobDocument.Invalid.self) { try JobDocument.decode(Array(try JSONSerialization.data(withJSONObject: hugeVersion))) }
    }

    /// Whatever Redis hands back, reading it throws or gives a job; it never traps.
    @Test func mutatedDocumentsNeverTrap() throws {
        let seeds = try (0..<20).map { _ in try JobDocument.encode(RandomJob.make()) }
        let inserts = Array("{}[]\",:-0123456789.eEtruefalsn \\u".utf8) + [0x00, 0xFF, 0xC3]
        var read = 0
        for _ in 0..<5_000 {
            var bytes = seeds.randomElement() ?? []
            for _ in 0..<Int.random(in: 1...4) where !bytes.isEmpty {
                let at = Int.random(in: 0..<bytes.count)
                switch Int.random(in: 0..<3) {
                case 0: bytes.remove(at: at)
                case 1: bytes.insert(inserts.randomElement() ?? 0, at: at)
                default: bytes[at] = inserts.randomElement() ?? 0
                }
            }
            if (try? JobDocument.decode(bytes)) != nil { read += 1 }
        }
        #expect(read < 5_000)
    }
}

/// Random jobs: every optional present or not, strings with escapes and non-ASCII, dates with
/// and without fractions of a millisecond, integers up to the type's ends.
enum RandomJob {
    static func make() -> Job {
        var job = Job(
            id: text(),
            userID: text(),
            createdAt: date(),
            updatedAt: date(),
            version: integer(),
            prompt: text(),
            durationSeconds: integer(),
            feature: JobFeature(audio: Bool.random(), audioTier: maybe(text), merge: maybe { Bool.random() }),
            audioMode: AudioMode.allCases.randomElement() ?? .parallel,
            videoOptions: VideoOptions(aspectRatio: maybe(text), resolution: maybe(text), seed: maybe(integer), negativePrompt: maybe(text)),
            metadata: maybe(text),
            video: task(.video),
            audio: maybe { task(.audio) },
            merge: maybe { task(.merge) },
            canceled: Bool.random(),
            priority: maybe { JobPriority.allCases.randomElement() ?? .low },
            startTimeoutSeconds: maybe(integer),
            cache: maybe { Bool.random() }
        )
        job.mediaLifetimeSeconds = maybe(integer)
        job.traceContext = maybe(text)
        job.custody = maybe { Bool.random() }
        return job
    }

    static func task(_ kind: TaskKind) -> JobTask {
        var task = JobTask(kind: kind, model: text(), status: TaskStatus.allCases.randomElement() ?? .pending)
        task.falRequestID = maybe(text)
        task.statusURL = maybe(text)
        task.responseURL = maybe(text)
        task.cancelURL = maybe(text)
        task.mediaURL = maybe(text)
        task.error = maybe(error)
        task.submitStartedAt = maybe(date)
        task.submitAttempt = maybe(text)
        task.lastTriedAt = maybe(date)
        task.dueAt = maybe(date)
        task.submittedAt = maybe(date)
        task.completedAt = maybe(date)
        task.previousRequestIDs = (0..<Int.random(in: 0...3)).map { _ in text() }
        task.attempts = integer()
        task.estimatedCost = maybe { MicroUSD(Int64(integer())) }
        task.cached = maybe { Bool.random() }
        task.startedAt = maybe(date)
        task.progress = maybe {
            var progress = TaskProgress()
            progress.queuePosition = maybe(integer)
            // Set member by member: `LogLine.init` would cut long values, as the store never does.
            progress.logs = (0..<Int.random(in: 0...3)).map { _ in
                var line = TaskProgress.LogLine(message: "")
                line.message = text()
                line.level = maybe(text)
                line.timestamp = maybe(text)
                return line
            }
            return progress
        }
        task.waiting = maybe { Bool.random() }
        task.waitPosition = maybe(integer)
        task.traceContext = maybe(text)
        task.storedURL = maybe(text)
        task.storeError = maybe(error)
        return task
    }

    static func error() -> TaskError {
        TaskError(code: text(), message: text(), detail: maybe(text))
    }

    static func maybe<T>(_ make: () -> T) -> T? {
        Bool.random() ? make() : nil
    }

    static let alphabet: [String] = ["a", "Z", " ", "\"", "\\", "/", "\n", "\t", "\u{0}", "\u{1F}", "\u{7F}", "\u{2028}", "é", "€", "🐈", "{", "}", ":", ","]

    static func text() -> String {
        (0..<Int.random(in: 0...20)).map { _ in alphabet.randomElement() ?? "a" }.joined()
    }

    static func integer() -> Int {
        switch Int.random(in: 0..<6) {
        case 0: Int.max
        case 1: Int.min
        case 2: 0
        default: Int.random(in: -1_000_000...1_000_000_000)
        }
    }

    /// Whole milliseconds, whole seconds, or any instant between 1970 and 2100.
    static func date() -> Date {
        switch Int.random(in: 0..<3) {
        case 0: Date(timeIntervalSince1970: Double(Int.random(in: 0...4_102_444_800_000)) / 1000)
        case 1: Date(timeIntervalSince1970: Double(Int.random(in: 0...4_102_444_800)))
        default: Date(timeIntervalSince1970: Double.random(in: 0...4_102_444_800))
        }
    }
}
