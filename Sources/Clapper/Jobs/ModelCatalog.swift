import Fal
import Foundation

/// The fal models Clapper uses: the video model and the audio tiers, with the data the rules need
/// (durations, where the media URL sits in the output, how long a request may take, price).
/// Loaded from `CLAPPER_MODEL_CATALOG` (JSON, see `load(json:audioPromptSuffix:)`), else the defaults.
public struct ModelCatalog: Codable, Sendable, Hashable {
    /// How a model takes its input.
    public enum InputStyle: String, Codable, Sendable, Hashable {
        /// `{prompt, negative_prompt, resolution, aspect_ratio, num_frames, frame_rate, seed}`
        case textToVideo = "text-to-video"
        /// `{prompt, duration}`
        case textToAudio = "text-to-audio"
        /// `{video_url, prompt, duration}`: needs the finished video, so it always runs after it.
        case videoToAudio = "video-to-audio"
        /// `{video_url, audio_url}`: the finished video and audio, merged into one file.
        case mergeAudioVideo = "merge-audio-video"
    }

    /// One fal model.
    public struct Model: Codable, Sendable, Hashable {
        /// fal model id, e.g. `fal-ai/ltx-video-13b-distilled`.
        public var id: String
        public var kind: TaskKind
        public var input: InputStyle
        /// Dotted path of the media URL in the model's output, e.g. `video.url`, `audio_file.url`.
        public var outputMediaPath: String
        public var minDurationSeconds: Int
        public var maxDurationSeconds: Int
        /// How long a request usually takes from submit to result (the reconciler's first check).
        public var expectedSeconds: Int
        /// After this long since submit an unfinished request is given up (`timed_out`).
        public var timeoutSeconds: Int
        /// Approximate USD per second of output, for cost estimates.
        public var pricePerSecond: Double
        /// Video models: frames per second sent as `frame_rate`.
        public var frameRate: Int?
        /// Video models: `num_frames = seconds * frameRate + 1` must lie in `minFrames...maxFrames`
        /// and `num_frames - 1` must be a multiple of `frameMultiple`.
        public var minFrames: Int?
        public var maxFrames: Int?
        public var frameMultiple: Int?
        /// Video models: the `aspect_ratio` values the model takes (nil: any).
        public var aspectRatios: [String]?
        /// Video models: the `resolution` values the model takes (nil: any).
        public var resolutions: [String]?

        public init(
            id: String, kind: TaskKind, input: InputStyle, outputMediaPath: String,
            minDurationSeconds: Int = 1, maxDurationSeconds: Int, expectedSeconds: Int, timeoutSeconds: Int,
            pricePerSecond: Double, frameRate: Int? = nil, minFrames: Int? = nil, maxFrames: Int? = nil, frameMultiple: Int? = nil,
            aspectRatios: [String]? = nil, resolutions: [String]? = nil
        ) {
            self.id = id
            self.kind = kind
            self.input = input
            self.outputMediaPath = outputMediaPath
            self.minDurationSeconds = minDurationSeconds
            self.maxDurationSeconds = maxDurationSeconds
            self.expectedSeconds = expectedSeconds
            self.timeoutSeconds = timeoutSeconds
            self.pricePerSecond = pricePerSecond
            self.frameRate = frameRate
            self.minFrames = minFrames
            self.maxFrames = maxFrames
            self.frameMultiple = frameMultiple
            self.aspectRatios = aspectRatios
            self.resolutions = resolutions
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            kind = try c.decode(TaskKind.self, forKey: .kind)
            input = try c.decodeIfPresent(InputStyle.self, forKey: .input) ?? (kind == .video ? .textToVideo : kind == .merge ? .mergeAudioVideo : .textToAudio)
            outputMediaPath = try c.decode(String.self, forKey: .outputMediaPath)
            minDurationSeconds = try c.decodeIfPresent(Int.self, forKey: .minDurationSeconds) ?? 1
            maxDurationSeconds = try c.decode(Int.self, forKey: .maxDurationSeconds)
            expectedSeconds = try c.decodeIfPresent(Int.self, forKey: .expectedSeconds) ?? 60
            timeoutSeconds = try c.decodeIfPresent(Int.self, forKey: .timeoutSeconds) ?? 900
            pricePerSecond = try c.decodeIfPresent(Double.self, forKey: .pricePerSecond) ?? 0
            frameRate = try c.decodeIfPresent(Int.self, forKey: .frameRate)
            minFrames = try c.decodeIfPresent(Int.self, forKey: .minFrames)
            maxFrames = try c.decodeIfPresent(Int.self, forKey: .maxFrames)
            frameMultiple = try c.decodeIfPresent(Int.self, forKey: .frameMultiple)
            aspectRatios = try c.decodeIfPresent([String].self, forKey: .aspectRatios)
            resolutions = try c.decodeIfPresent([String].self, forKey: .resolutions)
        }

        /// Runs on the finished video (video-to-audio): always submitted after the video.
        public var needsVideo: Bool { input == .videoToAudio }

        /// `num_frames` for `seconds` (video models; nil without a frame rate).
        public func frames(forSeconds seconds: Int) -> Int? {
            frameRate.map { seconds * $0 + 1 }
        }

        /// Whether the model can make `seconds` of media.
        public func accepts(seconds: Int) -> Bool {
            guard seconds >= minDurationSeconds, seconds <= maxDurationSeconds else { return false }
            guard let frames = frames(forSeconds: seconds) else { return true }
            if let minFrames, frames < minFrames { return false }
            if let maxFrames, frames > maxFrames { return false }
            if let frameMultiple, frameMultiple > 0, (frames - 1) % frameMultiple != 0 { return false }
            return true
        }
    }

    public var video: Model
    /// Audio models by tier name.
    public var audioTiers: [String: Model]
    /// The model that merges a job's video and audio into one file (`feature.merge`).
    public var merge: Model
    /// The tier used when `feature.audio` is on and no tier is given.
    public var defaultAudioTier: String
    /// Appended to the job's prompt for the audio model (`CLAPPER_AUDIO_PROMPT_SUFFIX`).
    public var audioPromptSuffix: String

    public init(
        video: Model, audioTiers: [String: Model], merge: Model = ModelCatalog.mergeAudioVideo,
        defaultAudioTier: String = "fast", audioPromptSuffix: String = " ambient sounds"
    ) {
        self.video = video
        self.audioTiers = audioTiers
        self.merge = merge
        self.defaultAudioTier = defaultAudioTier
        self.audioPromptSuffix = audioPromptSuffix
    }

    public init(from decoder: any Decoder) throws {
        let defaults = ModelCatalog.default
        let c = try decoder.container(keyedBy: CodingKeys.self)
        video = try c.decodeIfPresent(Model.self, forKey: .video) ?? defaults.video
        audioTiers = try c.decodeIfPresent([String: Model].self, forKey: .audioTiers) ?? defaults.audioTiers
        merge = try c.decodeIfPresent(Model.self, forKey: .merge) ?? defaults.merge
        defaultAudioTier = try c.decodeIfPresent(String.self, forKey: .defaultAudioTier) ?? defaults.defaultAudioTier
        audioPromptSuffix = try c.decodeIfPresent(String.self, forKey: .audioPromptSuffix) ?? defaults.audioPromptSuffix
    }

    public static let ltxVideo = Model(
        id: "fal-ai/ltx-video-13b-distilled", kind: .video, input: .textToVideo, outputMediaPath: "video.url",
        minDurationSeconds: 1, maxDurationSeconds: 10, expectedSeconds: 45, timeoutSeconds: 900, pricePerSecond: 0.04,
        frameRate: 24, minFrames: 9, maxFrames: 241, frameMultiple: 8,
        aspectRatios: ["9:16", "1:1", "16:9"], resolutions: ["480p", "720p"]
    )
    public static let soundEffects = Model(
        id: "cassetteai/sound-effects-generator", kind: .audio, input: .textToAudio, outputMediaPath: "audio_file.url",
        minDurationSeconds: 1, maxDurationSeconds: 30, expectedSeconds: 15, timeoutSeconds: 600, pricePerSecond: 0.001
    )
    public static let mmaudio = Model(
        id: "fal-ai/mmaudio-v2", kind: .audio, input: .videoToAudio, outputMediaPath: "video.url",
        minDurationSeconds: 1, maxDurationSeconds: 30, expectedSeconds: 30, timeoutSeconds: 600, pricePerSecond: 0.001
    )

    /// fal's ffmpeg merge: the video with the audio track laid over it ($0.0002 a second).
    public static let mergeAudioVideo = Model(
        id: "fal-ai/ffmpeg-api/merge-audio-video", kind: .merge, input: .mergeAudioVideo, outputMediaPath: "video.url",
        minDurationSeconds: 1, maxDurationSeconds: 3600, expectedSeconds: 10, timeoutSeconds: 600, pricePerSecond: 0.0002
    )

    /// ltx-video-13b-distilled for video; `fast` (cassetteai sound effects) and `synced` (mmaudio-v2).
    public static let `default` = ModelCatalog(
        video: ltxVideo,
        audioTiers: ["fast": soundEffects, "synced": mmaudio]
    )

    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { "model catalog: \(message)" }
    }

    /// The catalog from `json` (`CLAPPER_MODEL_CATALOG`; nil or empty: the defaults). Top-level keys
    /// `video`, `audioTiers`, `defaultAudioTier`, `audioPromptSuffix` each replace the default when
    /// present; a model lists `id`, `kind`, `outputMediaPath`, `maxDurationSeconds` and optionally
    /// `input`, `minDurationSeconds`, `expectedSeconds`, `timeoutSeconds`, `pricePerSecond`,
    /// `frameRate`, `minFrames`, `maxFrames`, `frameMultiple`, `aspectRatios`, `resolutions`. `audioPromptSuffix` given here
    /// (from `CLAPPER_AUDIO_PROMPT_SUFFIX`) wins over the JSON.
    public static func load(json: String?, audioPromptSuffix: String? = nil) throws(LoadError) -> ModelCatalog {
        var catalog = ModelCatalog.default
        if let json, !json.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            do {
                catalog = try JSONDecoder().decode(ModelCatalog.self, from: Data(json.utf8))
            } catch {
                throw LoadError(message: "invalid JSON: \(error)")
            }
        }
        if let audioPromptSuffix { catalog.audioPromptSuffix = audioPromptSuffix }
        try catalog.validate()
        return catalog
    }

    func validate() throws(LoadError) {
        guard video.kind == .video, video.input == .textToVideo else { throw LoadError(message: "video model \(video.id) must be text-to-video") }
        guard video.frameRate.map({ $0 > 0 }) ?? false else { throw LoadError(message: "video model \(video.id) needs a positive frameRate") }
        for (tier, model) in audioTiers where model.kind != .audio || model.input == .textToVideo {
            throw LoadError(message: "audio tier \(tier) (\(model.id)) must be an audio model")
        }
        guard audioTiers[defaultAudioTier] != nil else { throw LoadError(message: "default audio tier \(defaultAudioTier) is not in audioTiers") }
        guard merge.kind == .merge, merge.input == .mergeAudioVideo else { throw LoadError(message: "merge model \(merge.id) must be kind merge, input merge-audio-video") }
        for model in [video, merge] + audioTiers.values where model.timeoutSeconds <= 0 || model.maxDurationSeconds < model.minDurationSeconds {
            throw LoadError(message: "model \(model.id) has an invalid duration range or timeout")
        }
        guard !video.allowedDurations.isEmpty else { throw LoadError(message: "video model \(video.id) accepts no whole-second duration") }
    }

    /// The audio model of `tier`.
    public func audioModel(tier: String) -> Model? { audioTiers[tier] }

    /// The model with fal id `id` (the video model, an audio tier's, or the merge model).
    public func model(id: String) -> Model? {
        if video.id == id { return video }
        if merge.id == id { return merge }
        return audioTiers.values.first { $0.id == id }
    }

    /// Whole-second durations the job can ask for: the video model's, and with audio, the audio
    /// model's too.
    public func allowedDurations(audioTier: String?) -> [Int] {
        let audio = audioTier.flatMap { audioTiers[$0] }
        return video.allowedDurations.filter { audio?.accepts(seconds: $0) ?? true }
    }

    /// `{"prompt", "negative_prompt"?, "resolution"?, "aspect_ratio"?, "num_frames", "frame_rate", "seed"?}`:
    /// options the client left out are left out, so fal's defaults apply.
    public func videoInput(for job: Job) -> [UInt8] {
        let model = self.model(id: job.video.model) ?? video
        let frameRate = model.frameRate ?? video.frameRate ?? 24
        var w = JSONWriter()
        w.beginObject()
        w.field("prompt", job.prompt)
        if let negative = job.videoOptions.negativePrompt { w.field("negative_prompt", negative) }
        if let resolution = job.videoOptions.resolution { w.field("resolution", resolution) }
        if let aspectRatio = job.videoOptions.aspectRatio { w.field("aspect_ratio", aspectRatio) }
        w.field("num_frames", job.durationSeconds * frameRate + 1)
        w.field("frame_rate", frameRate)
        if let seed = job.videoOptions.seed { w.field("seed", seed) }
        w.endObject()
        return w.bytes
    }

    /// `{"video_url"?, "prompt", "duration"}`: the prompt plus `audioPromptSuffix`, the video's
    /// duration; `video_url` for video-to-audio models (pass the finished video's URL).
    public func audioInput(for job: Job, videoURL: String?) -> [UInt8] {
        let model = job.audio.flatMap { self.model(id: $0.model) } ?? job.feature.audioTier.flatMap { audioTiers[$0] }
        var w = JSONWriter()
        w.beginObject()
        if model?.needsVideo ?? (videoURL != nil), let videoURL { w.field("video_url", videoURL) }
        w.field("prompt", job.prompt + audioPromptSuffix)
        w.field("duration", job.durationSeconds)
        w.endObject()
        return w.bytes
    }

    /// `{"video_url", "audio_url"}`: the job's finished video and audio, for the merge model.
    public func mergeInput(for job: Job) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("video_url", job.video.mediaURL)
        w.field("audio_url", job.audio?.mediaURL)
        w.endObject()
        return w.bytes
    }

    /// The input fal gets for the job's task of `kind`.
    public func input(for job: Job, _ kind: TaskKind) -> [UInt8] {
        switch kind {
        case .video: videoInput(for: job)
        case .audio: audioInput(for: job, videoURL: job.video.mediaURL)
        case .merge: mergeInput(for: job)
        }
    }

    /// The media URL in a model's raw output, at the model's `outputMediaPath` (for an unknown
    /// model: `video.url`, `audio_file.url`, `audio.url`, the first found). Numbers are never parsed.
    public func mediaURL(inOutput output: [UInt8], model id: String) -> String? {
        let paths = model(id: id).map { [$0.outputMediaPath] } ?? ["video.url", "audio_file.url", "audio.url"]
        for path in paths {
            if let url = RawJSON.string(atPath: path, in: output) { return url }
        }
        return nil
    }

    /// When an unfinished `task` is to be given up (`timed_out`): its model's `timeoutSeconds`
    /// after fal accepted it (or after the submit started, when no answer was stored); nil before
    /// any submit started. A model no longer in the catalog gets the video model's timeout.
    public func deadline(for task: JobTask) -> Date? {
        guard let start = task.submittedAt ?? task.submitStartedAt else { return nil }
        let timeout = model(id: task.model)?.timeoutSeconds ?? video.timeoutSeconds
        return start.addingTimeInterval(TimeInterval(timeout))
    }

    /// Approximate USD for a job of `seconds` with the given audio tier (nil: no audio).
    public func estimatedPrice(seconds: Int, audioTier: String?) -> Double {
        let audio = audioTier.flatMap { audioTiers[$0] }?.pricePerSecond ?? 0
        return Double(seconds) * (video.pricePerSecond + audio)
    }
}

extension ModelCatalog.Model {
    /// Whole seconds from 1 to `maxDurationSeconds` the model accepts.
    public var allowedDurations: [Int] {
        guard maxDurationSeconds >= 1 else { return [] }
        return (1...maxDurationSeconds).filter { accepts(seconds: $0) }
    }
}
