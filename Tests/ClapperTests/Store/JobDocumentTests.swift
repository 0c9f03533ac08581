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
        var random = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let job = RandomJob.make(using: &random)
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
        for (key, path) in [("id", "id"), ("createdAt", "createdAt"), ("video", "video"), ("feature", "feature")] {
            var broken = object
            broken[key] = nil
            let bytes = Array(try JSONSerialization.data(withJSONObject: broken))
            #expect(throws: JobDocument.Invalid.self) { try JobDocument.decode(bytes) }
            #expect((try? JobDocument.decode(bytes)) == nil, "\(path)")
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
        var random = SystemRandomNumberGenerator()
        let seeds = try (0..<20).map { _ in try JobDocument.encode(RandomJob.make(using: &random)) }
        let inserts = Array("{}[]\",:-0123456789.eEtruefalsn \\u".utf8) + [0x00, 0xFF, 0xC3]
        var read = 0
        for _ in 0..<5_000 {
            var bytes = seeds.randomElement(using: &random) ?? []
            for _ in 0..<Int.random(in: 1...4, using: &random) where !bytes.isEmpty {
                let at = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes.remove(at: at)
                case 1: bytes.insert(inserts.randomElement(using: &random) ?? 0, at: at)
                default: bytes[at] = inserts.randomElement(using: &random) ?? 0
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
    static func make(using random: inout some RandomNumberGenerator) -> Job {
        var job = Job(
            id: text(&random),
            userID: text(&random),
            createdAt: date(&random),
            updatedAt: date(&random),
            version: integer(&random),
            prompt: text(&random),
            durationSeconds: integer(&random),
            feature: JobFeature(audio: Bool.random(using: &random), audioTier: maybe(&random) { text(&$0) }, merge: maybe(&random) { Bool.random(using: &$0) }),
            audioMode: AudioMode.allCases.randomElement(using: &random) ?? .parallel,
            videoOptions: VideoOptions(
                aspectRatio: maybe(&random) { text(&$0) }, resolution: maybe(&random) { text(&$0) },
                seed: maybe(&random) { integer(&$0) }, negativePrompt: maybe(&random) { text(&$0) }
            ),
            metadata: maybe(&random) { text(&$0) },
            video: task(.video, &random),
            audio: maybe(&random) { task(.audio, &$0) },
            merge: maybe(&random) { task(.merge, &$0) },
            canceled: Bool.random(using: &random),
            priority: maybe(&random) { JobPriority.allCases.randomElement(using: &$0) ?? .low },
            startTimeoutSeconds: maybe(&random) { integer(&$0) },
            cache: maybe(&random) { Bool.random(using: &$0) }
        )
        job.mediaLifetimeSeconds = maybe(&random) { integer(&$0) }
        job.traceContext = maybe(&random) { text(&$0) }
        job.custody = maybe(&random) { Bool.random(using: &$0) }
        return job
    }

    static func task(_ kind: TaskKind, _ random: inout some RandomNumberGenerator) -> JobTask {
        var task = JobTask(kind: kind, model: text(&random), status: TaskStatus.allCases.randomElement(using: &random) ?? .pending)
        task.falRequestID = maybe(&random) { text(&$0) }
        task.statusURL = maybe(&random) { text(&$0) }
        task.responseURL = maybe(&random) { text(&$0) }
        task.cancelURL = maybe(&random) { text(&$0) }
        task.mediaURL = maybe(&random) { text(&$0) }
        task.error = maybe(&random) { error(&$0) }
        task.submitStartedAt = maybe(&random) { date(&$0) }
        task.submitAttempt = maybe(&random) { text(&$0) }
        task.lastTriedAt = maybe(&random) { date(&$0) }
        task.dueAt = maybe(&random) { date(&$0) }
        task.submittedAt = maybe(&random) { date(&$0) }
        task.completedAt = maybe(&random) { date(&$0) }
        task.previousRequestIDs = (0..<Int.random(in: 0...3, using: &random)).map { _ in text(&random) }
        task.attempts = integer(&random)
        task.estimatedCost = maybe(&random) { MicroUSD(Int64(integer(&$0))) }
        task.cached = maybe(&random) { Bool.random(using: &$0) }
        task.startedAt = maybe(&random) { date(&$0) }
        task.progress = maybe(&random) { random in
            var progress = TaskProgress()
            progress.queuePosition = maybe(&random) { integer(&$0) }
            progress.logs = (0..<Int.random(in: 0...3, using: &random)).map { _ in
                var line = TaskProgress.LogLine(message: "")
                line.message = text(&random)
                line.level = maybe(&random) { text(&$0) }
                line.timestamp = maybe(&random) { text(&$0) }
                return line
            }
            return progress
        }
        task.waiting = maybe(&random) { Bool.random(using: &$0) }
        task.waitPosition = maybe(&random) { integer(&$0) }
        task.traceContext = maybe(&random) { text(&$0) }
        task.storedURL = maybe(&random) { text(&$0) }
        task.storeError = maybe(&random) { error(&$0) }
        return task
    }

    static func error(_ random: inout some RandomNumberGenerator) -> TaskError {
        TaskError(code: text(&random), message: text(&random), detail: maybe(&random) { text(&$0) })
    }

    static func maybe<T>(_ random: inout some RandomNumberGenerator, _ make: (inout any RandomNumberGenerator) -> T) -> T? {
        guard Bool.random(using: &random) else { return nil }
        var erased: any RandomNumberGenerator = SystemRandomNumberGenerator()
        return make(&erased)
    }

    static let alphabet: [String] = ["a", "Z", " ", "\"", "\\", "/", "\n", "\t", "\u{0}", "\u{1F}", "\u{7F}", "\u{2028}", "é", "€", "🐈", "{", "}", ":", ","]

    static func text(_ random: inout some RandomNumberGenerator) -> String {
        (0..<Int.random(in: 0...20, using: &random)).map { _ in alphabet.randomElement(using: &random) ?? "a" }.joined()
    }

    static func integer(_ random: inout some RandomNumberGenerator) -> Int {
        switch Int.random(in: 0..<6, using: &random) {
        case 0: Int.max
        case 1: Int.min
        case 2: 0
        default: Int.random(in: -1_000_000...1_000_000_000, using: &random)
        }
    }

    /// Whole milliseconds, whole seconds, or any instant between 1970 and 2100.
    static func date(_ random: inout some RandomNumberGenerator) -> Date {
        switch Int.random(in: 0..<3, using: &random) {
        case 0: Date(timeIntervalSince1970: Double(Int.random(in: 0...4_102_444_800_000, using: &random)) / 1000)
        case 1: Date(timeIntervalSince1970: Double(Int.random(in: 0...4_102_444_800, using: &random)))
        default: Date(timeIntervalSince1970: Double.random(in: 0...4_102_444_800, using: &random))
        }
    }
}
