import Fal
import Foundation
import Testing

@testable import Clapper

@Suite struct JobViewTests {
    let t0 = JobFixture.t0

    func object(_ bytes: [UInt8]) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(bytes))
        return try #require(value as? [String: Any])
    }

    @Test func completedJobWithFailedAudio() throws {
        var job = JobFixture.job()
        job.metadata = #"{"campaign": "spring", "n": [1, 2]}"#
        job.videoOptions = VideoOptions(aspectRatio: "16:9", resolution: "720p", seed: 7, negativePrompt: nil)
        job.version = 5
        _ = job.apply(.video, JobFixture.accepted("vr"), at: t0)
        _ = job.apply(.audio, JobFixture.accepted("ar"), at: t0)
        _ = job.apply(.audio, .failed(TaskError(code: "fal_error", message: "Invalid status code: 422")), at: t0)
        _ = job.apply(.video, .completed(mediaURL: "https://m/v.mp4"), at: t0.addingTimeInterval(1.2345))
        let body = JobView.encode(job, videoOutput: Array(#"{"video":{"url":"https://m/v.mp4"}}"#.utf8), audioOutput: nil, eventsURL: "/v1/jobs/job1/events")
        let o = try object(body)
        #expect(o["jobId"] as? String == "job1")
        #expect(o["status"] as? String == "completed")
        #expect(o["version"] as? Int == 5)
        #expect(o["createdAt"] as? String == "2027-01-15T08:00:00.000Z")
        #expect(o["updatedAt"] as? String == "2027-01-15T08:00:01.234Z")
        #expect(o["prompt"] as? String == "a cat on a boat")
        #expect(o["durationSeconds"] as? Int == 5)
        let feature = try #require(o["feature"] as? [String: Any])
        #expect(feature["audio"] as? Bool == true && feature["audioTier"] as? String == "fast")
        #expect(o["audioMode"] as? String == "parallel")
        let video = try #require(o["video"] as? [String: Any])
        #expect(video["aspectRatio"] as? String == "16:9" && video["seed"] as? Int == 7 && video["negativePrompt"] is NSNull)
        #expect((o["metadata"] as? [String: Any])?["campaign"] as? String == "spring")
        #expect(o["videoStatus"] as? String == "completed")
        #expect(o["videoUrl"] as? String == "https://m/v.mp4")
        #expect(o["videoError"] is NSNull && o["videoErrorCode"] is NSNull)
        #expect(o["videoRequestId"] as? String == "vr")
        #expect(o["audioStatus"] as? String == "failed")
        #expect(o["audioUrl"] is NSNull)
        #expect(o["audioError"] as? String == "Audio generation failed: Invalid status code: 422")
        #expect(o["audioErrorCode"] as? String == "fal_error")
        #expect(o["audioRequestId"] as? String == "ar")
        #expect((o["videoOutput"] as? [String: Any])?["video"] != nil)
        #expect(o["audioOutput"] is NSNull)
        #expect(o["eventsUrl"] as? String == "/v1/jobs/job1/events")
        // The metadata is spliced as sent, spacing included.
        #expect(String(decoding: body, as: UTF8.self).contains(#""metadata":{"campaign": "spring", "n": [1, 2]}"#))
    }

    @Test func noAudioRequestedMeansNullAudioFields() throws {
        let job = JobFixture.job(audio: false)
        let o = try object(JobView.encode(job, videoOutput: nil, audioOutput: Array("{}".utf8)))
        for key in ["audioMode", "audioModel", "audioStatus", "audioUrl", "audioError", "audioErrorCode", "audioRequestId", "audioOutput"] {
            #expect(o[key] is NSNull, "\(key)")
        }
        #expect((o["feature"] as? [String: Any])?["audio"] as? Bool == false)
        #expect((o["feature"] as? [String: Any])?["audioTier"] is NSNull)
        #expect(o["metadata"] is NSNull && o["videoOutput"] is NSNull && o["eventsUrl"] == nil)
        #expect(o["status"] as? String == "queued")
    }

    @Test func rawOutputsSurviveByteForByte() throws {
        let raw = #"{"prompt": "x", "seed": 17454220438242315174, "video": {"url": "https://m/v.mp4", "file_size": 1.5e3}, "extra": [true, null, -0.0]}"#
        let audioRaw = #"{"audio_file":{"url":"https://m/a.wav"},"n":123456789012345678901234567890}"#
        let job = JobFixture.job()
        let body = JobView.encode(job, videoOutput: Array(raw.utf8), audioOutput: Array(audioRaw.utf8))
        let text = String(decoding: body, as: UTF8.self)
        #expect(text.contains(#""videoOutput":"# + raw))
        #expect(text.contains(#""audioOutput":"# + audioRaw))
        _ = try object(body)
        #expect(RawJSON.value(atPath: "videoOutput", in: body).map(Array.init) == Array(raw.utf8))
        #expect(RawJSON.value(atPath: "videoOutput.seed", in: body).map(Array.init) == Array("17454220438242315174".utf8))
    }

    @Test func invalidRawOutputBecomesNull() throws {
        let job = JobFixture.job()
        let body = JobView.encode(job, videoOutput: Array(#"{"video": "#.utf8), audioOutput: [0xFF, 0x22])
        let o = try object(body)
        #expect(o["videoOutput"] is NSNull && o["audioOutput"] is NSNull)
    }

    @Test func promptIsEscaped() throws {
        let prompt = "line1\nline2\r\"quoted\" back\\slash tab\t \u{2028}sep\u{2029} nul\u{0} bell\u{7} é 🐈"
        let job = JobFixture.job(prompt: prompt)
        let body = JobView.encode(job, videoOutput: nil, audioOutput: nil)
        let text = String(decoding: body, as: UTF8.self)
        #expect(!text.contains("\u{2028}") && !text.contains("\u{2029}") && !text.contains("\n") && !text.contains("\r"))
        #expect(text.contains(#"\u2028"#) && text.contains(#"\n"#) && text.contains(#"\r"#) && text.contains(#"\u0000"#))
        #expect(try object(body)["prompt"] as? String == prompt)
    }

    @Test func timedOutAndVideoFailedErrors() throws {
        var job = JobFixture.job(mode: .afterVideo)
        _ = job.apply(.video, .timedOut, at: t0)
        let o = try object(JobView.encode(job, videoOutput: nil, audioOutput: nil))
        #expect(o["status"] as? String == "failed")
        #expect(o["videoStatus"] as? String == "timed_out")
        #expect(o["videoErrorCode"] as? String == "timed_out")
        #expect(o["audioStatus"] as? String == "canceled")
        #expect(o["audioErrorCode"] as? String == "video_failed")
        #expect(o["audioError"] as? String == "Audio generation failed: the video did not complete")
    }

    @Test(arguments: [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (951_782_400.5, "2000-02-29T00:00:00.500Z"),
        (-1.0, "1969-12-31T23:59:59.000Z"),
        (1_700_000_000.999, "2023-11-14T22:13:20.999Z"),
        (4_102_444_799.0, "2099-12-31T23:59:59.000Z"),
    ])
    func timestamps(seconds: Double, expected: String) {
        #expect(Timestamp.iso8601(Date(timeIntervalSince1970: seconds)) == expected)
    }
}

/// The checks the view relies on before splicing raw bytes (see JSONWriter).
private func isValidJSON(_ bytes: [UInt8]) -> Bool {
    String(validating: bytes, as: UTF8.self) != nil && (try? RawJSON.validate(bytes[...])) != nil
}

/// Fal's raw JSON scanner as the jobs layer uses it.
@Suite struct JobRawJSONTests {
    @Test(arguments: [
        "{}", "[]", "0", "-0.5e+10", "\"a\\u00e9\\n\"", "true", " null ", #"{"a":[1,{"b":null}],"c":"d"}"#,
        "17454220438242315174",
    ])
    func valid(_ text: String) {
        #expect(isValidJSON(Array(text.utf8)))
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "tru", "\"\u{1}\"", "\"\\x\"", "{\"a\" 1}", "{} {}", "NaN", "'a'",
        "\"\\u12g4\"", "[1 2]", "{1:2}",
    ])
    func invalid(_ text: String) {
        #expect(!isValidJSON(Array(text.utf8)))
    }

    @Test func deepNestingIsRejectedNotCrashing() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(!isValidJSON(Array(deep.utf8)))
    }

    @Test func lookups() {
        let text = Array(#"{"a\u0062": {"x": 1}, "video": {"content_type": "video/mp4", "url": "https:\/\/m\/v.mp4"}, "n": 17454220438242315174}"#.utf8)
        #expect(RawJSON.string(atPath: "video.url", in: text) == "https://m/v.mp4")
        #expect(RawJSON.value(atPath: "n", in: text).map(Array.init) == Array("17454220438242315174".utf8))
        #expect(RawJSON.value(atPath: "ab.x", in: text).map(Array.init) == Array("1".utf8))
        #expect(RawJSON.value(atPath: "missing", in: text) == nil)
        #expect(RawJSON.string(atPath: "n", in: text) == nil)
        #expect(RawJSON.value(atPath: "video.url.deeper", in: text) == nil)
        #expect(RawJSON.isObject(text) && !RawJSON.isObject(Array("[1]".utf8)))
    }
}
