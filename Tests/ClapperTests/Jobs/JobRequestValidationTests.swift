import Foundation
import Testing

@testable import Clapper

@Suite struct JobRequestValidationTests {
    let catalog = ModelCatalog.default

    func parse(_ json: String) throws(ClapperError) -> CreateJobRequest {
        try CreateJobRequest.parse(Array(json.utf8), catalog: catalog)
    }

    func error(_ json: String) -> ClapperError? {
        do {
            _ = try parse(json)
            return nil
        } catch {
            return error
        }
    }

    @Test func minimalBodyGetsDefaults() throws {
        let r = try parse(#"{"prompt":"a cat"}"#)
        #expect(r.prompt == "a cat" && r.durationSeconds == 5)
        #expect(r.feature == JobFeature(audio: false, audioTier: nil))
        #expect(r.audioMode == .parallel && r.video == VideoOptions() && r.metadata == nil)
    }

    @Test func fullBody() throws {
        let body = #"""
        {"prompt": "waves\non rocks", "durationSeconds": 8, "feature": {"audio": true, "audioTier": "fast"},
         "audioMode": "after-video", "video": {"aspectRatio": "9:16", "resolution": "480p", "seed": 42, "negativePrompt": "blurry"},
         "metadata": {"trace": "x", "big": 17454220438242315174, "nested": {"a": [1, 2]}}}
        """#
        let r = try parse(body)
        #expect(r.prompt == "waves\non rocks" && r.durationSeconds == 8)
        #expect(r.feature == JobFeature(audio: true, audioTier: "fast", merge: true), "a separate audio track is merged by default")
        #expect(r.audioMode == .afterVideo)
        #expect(r.video == VideoOptions(aspectRatio: "9:16", resolution: "480p", seed: 42, negativePrompt: "blurry"))
        #expect(r.metadata == #"{"trace": "x", "big": 17454220438242315174, "nested": {"a": [1, 2]}}"#)
    }

    @Test func audioDefaults() throws {
        let fast = try parse(#"{"prompt":"p","feature":{"audio":true}}"#)
        #expect(fast.feature.audioTier == "fast" && fast.audioMode == .parallel)
        let synced = try parse(#"{"prompt":"p","feature":{"audio":true,"audioTier":"synced"}}"#)
        #expect(synced.audioMode == .afterVideo)
        let fastAfter = try parse(#"{"prompt":"p","feature":{"audio":true},"audioMode":"after-video"}"#)
        #expect(fastAfter.audioMode == .afterVideo)
        // Audio off: tier and mode are ignored.
        let off = try parse(#"{"prompt":"p","feature":{"audio":false,"audioTier":"nope"},"audioMode":"after-video"}"#)
        #expect(off.feature == JobFeature(audio: false, audioTier: nil) && off.audioMode == .parallel)
    }

    @Test func nullCountsAsAbsent() throws {
        let r = try parse(#"{"prompt":"p","durationSeconds":null,"feature":{"audio":true,"audioTier":null},"video":null,"metadata":null}"#)
        #expect(r.durationSeconds == 5 && r.feature.audioTier == "fast" && r.metadata == nil)
    }

    @Test(arguments: [
        ("", "invalid_json", 400, nil),
        ("{", "invalid_json", 400, nil),
        ("[1]", "invalid_json", 400, nil),
        (#""prompt""#, "invalid_json", 400, nil),
        (#"{"prompt":"a","prompt":"b"}"#, "invalid_json", 400, nil),
        (#"{"prompt":1}"#, "invalid_field", 400, "prompt"),
        (#"{"prompt":"p","durationSeconds":"5"}"#, "invalid_field", 400, "durationSeconds"),
        (#"{"prompt":"p","durationSeconds":5.5}"#, "invalid_field", 400, "durationSeconds"),
        (#"{"prompt":"p","durationSeconds":5e0}"#, "invalid_field", 400, "durationSeconds"),
        (#"{"prompt":"p","feature":true}"#, "invalid_field", 400, "feature"),
        (#"{"prompt":"p","feature":{"audio":"yes"}}"#, "invalid_field", 400, "feature.audio"),
        (#"{"prompt":"p","feature":{"audio":1}}"#, "invalid_field", 400, "feature.audio"),
        (#"{"prompt":"p","feature":{"audio":true,"audioTier":3}}"#, "invalid_field", 400, "feature.audioTier"),
        (#"{"prompt":"p","audioMode":1}"#, "invalid_field", 400, "audioMode"),
        (#"{"prompt":"p","video":[]}"#, "invalid_field", 400, "video"),
        (#"{"prompt":"p","video":{"seed":"1"}}"#, "invalid_field", 400, "video.seed"),
        (#"{"prompt":"p","video":{"seed":1.5}}"#, "invalid_field", 400, "video.seed"),
        (#"{"prompt":"p","video":{"aspectRatio":169}}"#, "invalid_field", 400, "video.aspectRatio"),
        (#"{"prompt":"p","metadata":"x"}"#, "invalid_field", 400, "metadata"),
        (#"{"prompt":"p","metadata":[1]}"#, "invalid_field", 400, "metadata"),
        (#"{"prompt":"p","extra":1}"#, "unknown_field", 422, "extra"),
        (#"{"prompt":"p","feature":{"audio":true,"tier":"fast"}}"#, "unknown_field", 422, "feature.tier"),
        (#"{"prompt":"p","video":{"aspect_ratio":"1:1"}}"#, "unknown_field", 422, "video.aspect_ratio"),
        (#"{}"#, "validation_failed", 422, "prompt"),
        (#"{"prompt":""}"#, "validation_failed", 422, "prompt"),
        (#"{"prompt":"  \n\t "}"#, "validation_failed", 422, "prompt"),
        (#"{"prompt":"p","durationSeconds":0}"#, "validation_failed", 422, "durationSeconds"),
        (#"{"prompt":"p","durationSeconds":-1}"#, "validation_failed", 422, "durationSeconds"),
        (#"{"prompt":"p","durationSeconds":11}"#, "validation_failed", 422, "durationSeconds"),
        (#"{"prompt":"p","durationSeconds":99999999999999999999}"#, "validation_failed", 422, "durationSeconds"),
        (#"{"prompt":"p","feature":{"audio":true,"audioTier":"premium"}}"#, "validation_failed", 422, "feature.audioTier"),
        (#"{"prompt":"p","feature":{"audio":true},"audioMode":"serial"}"#, "validation_failed", 422, "audioMode"),
        (#"{"prompt":"p","audioMode":"serial"}"#, "validation_failed", 422, "audioMode"),
        (#"{"prompt":"p","feature":{"audio":true,"audioTier":"synced"},"audioMode":"parallel"}"#, "validation_failed", 422, "audioMode"),
        (#"{"prompt":"p","video":{"aspectRatio":"4:3"}}"#, "validation_failed", 422, "video.aspectRatio"),
        (#"{"prompt":"p","video":{"resolution":"1080p"}}"#, "validation_failed", 422, "video.resolution"),
        (#"{"prompt":"p","video":{"seed":-1}}"#, "validation_failed", 422, "video.seed"),
        (#"{"prompt":"p","video":{"seed":17454220438242315174}}"#, "validation_failed", 422, "video.seed"),
    ] as [(String, String, Int, String?)])
    func rejected(body: String, code: String, status: Int, field: String?) {
        let e = error(body)
        #expect(e?.code.description == code, "\(body)")
        #expect(e.map { Int(ErrorMiddleware<ClapperRequestContext>.status(for: $0.code).code) } == status, "\(body)")
        #expect(e?.field == field, "\(body)")
        if let field { #expect(e?.message.contains(field) == true, "\(e?.message ?? "")") }
    }

    @Test func promptLengthCountsCharacters() throws {
        let max = String(repeating: "é", count: 2000)
        #expect(try parse(#"{"prompt":"\#(max)"}"#).prompt.count == 2000)
        #expect(error(#"{"prompt":"\#(max)x"}"#)?.field == "prompt")
        let longNegative = String(repeating: "n", count: 2001)
        #expect(error(#"{"prompt":"p","video":{"negativePrompt":"\#(longNegative)"}}"#)?.field == "video.negativePrompt")
    }

    @Test func metadataLimitIsOnRawBytes() throws {
        // {"k":"…"} is 8 bytes plus the string.
        let fits = #"{"k":"\#(String(repeating: "x", count: 4088))"}"#
        #expect(fits.utf8.count == 4096)
        #expect(try parse(#"{"prompt":"p","metadata":\#(fits)}"#).metadata == fits)
        let over = #"{"k":"\#(String(repeating: "x", count: 4089))"}"#
        let e = error(#"{"prompt":"p","metadata":\#(over)}"#)
        #expect(e?.code == .validationFailed && e?.field == "metadata" && e.map { ErrorMiddleware<ClapperRequestContext>.status(for: $0.code).code } == 422)
        // Unknown keys inside metadata are the client's business.
        #expect(try parse(#"{"prompt":"p","metadata":{"anything":{"goes":true}}}"#).metadata == #"{"anything":{"goes":true}}"#)
    }

    @Test func durationLimitedByTheAudioModel() throws {
        let tight = ModelCatalog.Model(
            id: "x/short-audio", kind: .audio, input: .textToAudio, outputMediaPath: "audio.url",
            maxDurationSeconds: 4, expectedSeconds: 5, timeoutSeconds: 60, pricePerSecond: 0
        )
        var catalog = ModelCatalog.default
        catalog.audioTiers["short"] = tight
        #expect(try CreateJobRequest.parse(Array(#"{"prompt":"p","durationSeconds":4,"feature":{"audio":true,"audioTier":"short"}}"#.utf8), catalog: catalog).durationSeconds == 4)
        do {
            _ = try CreateJobRequest.parse(Array(#"{"prompt":"p","durationSeconds":5,"feature":{"audio":true,"audioTier":"short"}}"#.utf8), catalog: catalog)
            Issue.record("5 s should exceed the audio model")
        } catch {
            #expect(error.field == "durationSeconds" && error.message.contains("audio") && error.code == .validationFailed)
        }
        #expect(catalog.allowedDurations(audioTier: "short") == [1, 2, 3, 4])
        #expect(catalog.allowedDurations(audioTier: nil) == Array(1...10))
    }

    @Test func messagesDoNotEchoValues() {
        let e = error(#"{"prompt":"p","video":{"aspectRatio":"<script>"}}"#)
        #expect(e?.message.contains("<script>") == false)
    }

    @Test func longUnknownFieldNamesAreCut() {
        let name = String(repeating: "k", count: 5000)
        let e = error(#"{"prompt":"p","\#(name)":1}"#)
        #expect(e?.code == .unknownField && (e?.message.count ?? 0) < 200)
    }

    @Test func makeJob() throws {
        let r = try parse(#"{"prompt":"p","durationSeconds":3,"feature":{"audio":true,"audioTier":"synced"},"metadata":{"a":1}}"#)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let job = r.makeJob(id: "j", userID: "u", catalog: catalog, at: now)
        #expect(job.id == "j" && job.userID == "u" && job.createdAt == now && job.updatedAt == now && job.version == 1)
        #expect(job.video.model == "fal-ai/ltx-video-13b-distilled" && job.video.status == .pending)
        #expect(job.audio?.model == "fal-ai/mmaudio-v2" && job.audioMode == .afterVideo)
        #expect(job.metadata == #"{"a":1}"#)
        #expect(job.submissionsDue == [.video])
        let noAudio = try parse(#"{"prompt":"p"}"#).makeJob(id: "j", userID: "u", catalog: catalog, at: now)
        #expect(noAudio.audio == nil)
    }

    @Test func bodyHash() {
        #expect(CreateJobRequest.canonicalBodyHash([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(CreateJobRequest.canonicalBodyHash(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(CreateJobRequest.canonicalBodyHash(Array(#"{"prompt":"a"}"#.utf8)) != CreateJobRequest.canonicalBodyHash(Array(#"{"prompt": "a"}"#.utf8)))
    }
}
