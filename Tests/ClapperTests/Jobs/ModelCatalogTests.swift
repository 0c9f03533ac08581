import Foundation
import Testing

@testable import Clapper

@Suite struct ModelCatalogTests {
    let catalog = ModelCatalog.default

    func object(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    @Test func defaults() {
        #expect(catalog.video.id == "fal-ai/ltx-video-13b-distilled" && catalog.video.frameRate == 24)
        #expect(catalog.video.outputMediaPath == "video.url")
        #expect(catalog.audioModel(tier: "fast")?.id == "cassetteai/sound-effects-generator")
        #expect(catalog.audioModel(tier: "fast")?.outputMediaPath == "audio_file.url")
        #expect(catalog.audioModel(tier: "fast")?.maxDurationSeconds == 30)
        #expect(catalog.audioModel(tier: "fast")?.needsVideo == false)
        #expect(catalog.audioModel(tier: "synced")?.id == "fal-ai/mmaudio-v2")
        #expect(catalog.audioModel(tier: "synced")?.outputMediaPath == "video.url")
        #expect(catalog.audioModel(tier: "synced")?.needsVideo == true)
        #expect(catalog.defaultAudioTier == "fast" && catalog.audioPromptSuffix == " ambient sounds")
        #expect(catalog.video.allowedDurations == Array(1...10))
        #expect(catalog.model(id: "fal-ai/mmaudio-v2")?.kind == .audio)
        #expect(catalog.model(id: "nope") == nil)
        for model in [catalog.video] + catalog.audioTiers.values {
            #expect(model.timeoutSeconds > model.expectedSeconds && model.pricePerSecond > 0)
        }
    }

    @Test func frameRule() {
        let v = catalog.video
        #expect(v.frames(forSeconds: 5) == 121)
        #expect(v.accepts(seconds: 10) && !v.accepts(seconds: 11) && !v.accepts(seconds: 0))
        var odd = v
        odd.frameRate = 25  // 25 s + 1 frames: only multiples of 8 seconds keep (frames - 1) % 8 == 0
        odd.maxFrames = 1000
        odd.maxDurationSeconds = 20
        #expect(odd.allowedDurations == [8, 16])
    }

    @Test func videoInput() throws {
        var job = JobFixture.job(prompt: "a \"quoted\" cat\n")
        job.durationSeconds = 4
        let minimal = try object(catalog.videoInput(for: job))
        #expect(minimal["prompt"] as? String == "a \"quoted\" cat\n")
        #expect(minimal["num_frames"] as? Int == 97 && minimal["frame_rate"] as? Int == 24)
        #expect(Set(minimal.keys) == ["prompt", "num_frames", "frame_rate"])
        job.videoOptions = VideoOptions(aspectRatio: "16:9", resolution: "720p", seed: 7, negativePrompt: "blur")
        let bytes = catalog.videoInput(for: job)
        let full = try object(bytes)
        #expect(full["aspect_ratio"] as? String == "16:9" && full["resolution"] as? String == "720p")
        #expect(full["seed"] as? Int == 7 && full["negative_prompt"] as? String == "blur")
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix(#"{"prompt":"#))
    }

    @Test func audioInputTextToAudio() throws {
        let job = JobFixture.job(tier: "fast")
        let input = try object(catalog.audioInput(for: job, videoURL: nil))
        #expect(input["prompt"] as? String == "a cat on a boat ambient sounds")
        #expect(input["duration"] as? Int == 5)
        #expect(Set(input.keys) == ["prompt", "duration"])
        // A video URL is not sent to a text-to-audio model.
        #expect(try object(catalog.audioInput(for: job, videoURL: "https://m/v.mp4"))["video_url"] == nil)
    }

    @Test func audioInputVideoToAudio() throws {
        let job = JobFixture.job(mode: .afterVideo, tier: "synced")
        var custom = catalog
        custom.audioPromptSuffix = ", with sound effects"
        let input = try object(custom.audioInput(for: job, videoURL: "https://m/v.mp4"))
        #expect(input["video_url"] as? String == "https://m/v.mp4")
        #expect(input["prompt"] as? String == "a cat on a boat, with sound effects")
        #expect(input["duration"] as? Int == 5)
    }

    @Test func mediaURLExtraction() {
        let ltx = Array(#"{"seed": 17454220438242315174, "video": {"url": "https://v/1.mp4", "content_type": "video/mp4"}}"#.utf8)
        #expect(catalog.mediaURL(inOutput: ltx, model: "fal-ai/ltx-video-13b-distilled") == "https://v/1.mp4")
        let sfx = Array(#"{"audio_file": {"url": "https://a/1.wav"}}"#.utf8)
        #expect(catalog.mediaURL(inOutput: sfx, model: "cassetteai/sound-effects-generator") == "https://a/1.wav")
        #expect(catalog.mediaURL(inOutput: sfx, model: "fal-ai/ltx-video-13b-distilled") == nil)
        let other = Array(#"{"audio": {"url": "https://a/2.wav"}}"#.utf8)
        #expect(catalog.mediaURL(inOutput: other, model: "fal-ai/mmaudio-v2/text-to-audio") == "https://a/2.wav")
        #expect(catalog.mediaURL(inOutput: Array("not json".utf8), model: "fal-ai/mmaudio-v2") == nil)
    }

    @Test func loadDefaultsAndOverrides() throws {
        #expect(try ModelCatalog.load(json: nil) == .default)
        #expect(try ModelCatalog.load(json: "  ") == .default)
        #expect(try ModelCatalog.load(json: nil, audioPromptSuffix: " sfx").audioPromptSuffix == " sfx")
        let json = #"""
        {"audioTiers": {"fast": {"id": "fal-ai/mmaudio-v2/text-to-audio", "kind": "audio", "outputMediaPath": "audio.url", "maxDurationSeconds": 20}},
         "audioPromptSuffix": " with sound"}
        """#
        let c = try ModelCatalog.load(json: json)
        #expect(c.video == ModelCatalog.ltxVideo)
        #expect(c.audioTiers.keys.sorted() == ["fast"])
        let fast = try #require(c.audioModel(tier: "fast"))
        #expect(fast.input == .textToAudio && fast.timeoutSeconds == 900 && fast.minDurationSeconds == 1)
        #expect(c.audioPromptSuffix == " with sound")
        #expect(try ModelCatalog.load(json: json, audioPromptSuffix: " env").audioPromptSuffix == " env")
        // The encoded default round-trips.
        let encoded = String(decoding: try JSONEncoder().encode(ModelCatalog.default), as: UTF8.self)
        #expect(try ModelCatalog.load(json: encoded) == .default)
    }

    @Test(arguments: [
        "{",
        #"{"video": {"id": "x"}}"#,
        #"{"defaultAudioTier": "missing"}"#,
        #"{"video": {"id": "x", "kind": "audio", "outputMediaPath": "a", "maxDurationSeconds": 5}}"#,
        #"{"video": {"id": "x", "kind": "video", "outputMediaPath": "a", "maxDurationSeconds": 5}}"#,
        #"{"audioTiers": {"v": {"id": "x", "kind": "video", "outputMediaPath": "a", "maxDurationSeconds": 5, "frameRate": 24}}}"#,
        #"{"video": {"id": "x", "kind": "video", "outputMediaPath": "a", "maxDurationSeconds": 5, "frameRate": 24, "maxFrames": 10}}"#,
    ])
    func loadRejectsBadCatalogs(json: String) {
        #expect(throws: ModelCatalog.LoadError.self) { try ModelCatalog.load(json: json) }
    }

    @Test func deadlines() {
        let t0 = JobFixture.t0
        var video = JobTask(kind: .video, model: "fal-ai/ltx-video-13b-distilled")
        #expect(catalog.deadline(for: video) == nil)
        _ = video.apply(.submitStarted(attempt: "a1"), at: t0)
        #expect(catalog.deadline(for: video) == t0.addingTimeInterval(900))
        _ = video.apply(JobFixture.accepted("v"), at: t0.addingTimeInterval(5))
        #expect(catalog.deadline(for: video) == t0.addingTimeInterval(905))
        var audio = JobTask(kind: .audio, model: "cassetteai/sound-effects-generator")
        _ = audio.apply(.submitStarted(attempt: "a1"), at: t0)
        #expect(catalog.deadline(for: audio) == t0.addingTimeInterval(600))
        let retired = JobTask(kind: .audio, model: "gone/model", submitStartedAt: t0)
        #expect(catalog.deadline(for: retired) == t0.addingTimeInterval(900))
    }

    @Test func priceEstimate() {
        #expect(abs(catalog.estimatedPrice(seconds: 5, audioTier: nil) - 0.2) < 1e-9)
        #expect(catalog.estimatedPrice(seconds: 5, audioTier: "synced") > catalog.estimatedPrice(seconds: 5, audioTier: nil))
    }
}
