import Crypto
import Fal
import Foundation

/// A validated `POST /v1/jobs` body:
/// `{"prompt", "durationSeconds", "feature": {"audio", "audioTier", "merge"}, "audioMode": "parallel"|"after-video",
///   "video": {"aspectRatio", "resolution", "seed", "negativePrompt"}, "metadata": {…},
///   "priority": "normal"|"low", "startTimeoutSeconds": 1…86400}`.
///
/// **Unknown fields are rejected**, at every level (top, `feature`, `video`), with 422
/// `unknown_field` naming the field: a misspelt option (`aspect_ratio`, `audiotier`) would
/// otherwise be silently dropped and the client would get a job it did not ask for. `metadata`
/// is the one free-form object: its content is the client's and is kept byte for byte.
///
/// Other choices: `null` counts as absent; duplicate keys are malformed JSON (400); only
/// `prompt` is required; `durationSeconds` defaults to 5 (ltx's own default of 121 frames);
/// with `feature.audio` off, `audioTier` and `audioMode` are type-checked but otherwise ignored.
///
/// Text limits count what `openapi.yaml` says (`maxLength`: Unicode code points, see
/// `TextLimit`), each with a byte cap: `prompt` and `video.negativePrompt` at most 2000 code
/// points and 8000 UTF-8 bytes; `metadata` at most 4096 bytes of JSON text as sent.
public struct CreateJobRequest: Sendable, Hashable {
    /// `prompt` and `video.negativePrompt`: Unicode code points (JSON Schema `maxLength`).
    public static let maxPromptCodePoints = 2000
    /// Their UTF-8 byte cap (4 per code point: every text within the code point limit fits).
    public static let maxPromptBytes = 4 * maxPromptCodePoints
    public static let maxMetadataBytes = 4096
    static let promptLimit = TextLimit(maxCodePoints: maxPromptCodePoints, maxBytes: maxPromptBytes)
    public static let defaultDurationSeconds = 5

    public var prompt: String
    public var durationSeconds: Int
    public var feature: JobFeature
    public var audioMode: AudioMode
    public var video: VideoOptions
    /// The `metadata` object's raw JSON text, exactly as sent.
    public var metadata: String?
    /// fal's queue priority for every task (`X-Fal-Queue-Priority`); nil: fal's default (normal).
    public var priority: JobPriority?
    /// fal's start deadline for every task (`X-Fal-Request-Timeout`): a task still queued at fal
    /// this long after its submit fails `start_timeout` and is never sent again.
    public var startTimeoutSeconds: Int?

    public static let maxStartTimeoutSeconds = 86_400
    /// Reuse an earlier identical task's result (`cache: true`).
    public var cache: Bool?

    public init(prompt: String, durationSeconds: Int, feature: JobFeature, audioMode: AudioMode, video: VideoOptions = VideoOptions(), metadata: String? = nil) {
        self.prompt = prompt
        self.durationSeconds = durationSeconds
        self.feature = feature
        self.audioMode = audioMode
        self.video = video
        self.metadata = metadata
    }

    /// Lowercase hex SHA-256 of the body bytes as received, for the `Idempotency-Key` check
    /// (same key, same bytes: same job).
    public static func canonicalBodyHash(_ body: [UInt8]) -> String {
        SHA256.hash(data: body).hex
    }

    /// The job this request creates, every task pending.
    public func makeJob(id: String, userID: String, catalog: ModelCatalog, at now: Date) -> Job {
        let audioModel = feature.audio ? feature.audioTier.flatMap { catalog.audioModel(tier: $0) } : nil
        return Job(
            id: id,
            userID: userID,
            createdAt: now,
            prompt: prompt,
            durationSeconds: durationSeconds,
            feature: feature,
            audioMode: audioMode,
            videoOptions: video,
            metadata: metadata,
            video: Self.task(.video, catalog.video, seconds: durationSeconds),
            audio: audioModel.map { Self.task(.audio, $0, seconds: durationSeconds) },
            merge: audioModel != nil && feature.merge == true ? Self.task(.merge, catalog.merge, seconds: durationSeconds) : nil,
            priority: priority,
            startTimeoutSeconds: startTimeoutSeconds,
            cache: cache
        )
    }

    private static func task(_ kind: TaskKind, _ model: ModelCatalog.Model, seconds: Int) -> JobTask {
        var task = JobTask(kind: kind, model: model.id)
        task.estimatedCost = MicroUSD(pricePerSecond: model.pricePerSecond, seconds: seconds)
        return task
    }

    /// Parses and validates a body. Throws `ClapperError` (`invalid_json`,
    /// `invalid_field`) or 422 (`unknown_field`, `validation_failed`).
    public static func parse(_ body: [UInt8], catalog: ModelCatalog) throws(ClapperError) -> CreateJobRequest {
        guard let members = Fields.members(of: body[...]) else {
            throw (try? RawJSON.validate(body[...])) != nil ? .invalidJSON("the body must be a JSON object") : .invalidJSON("the body is not valid JSON")
        }
        let top = try Fields(members, in: body, prefix: "", allowed: ["prompt", "durationSeconds", "feature", "audioMode", "video", "metadata", "priority", "startTimeoutSeconds", "cache"])

        // Types first (400), then rules (422).
        let prompt = try top.string("prompt")
        let duration = try top.integer("durationSeconds")
        let featureFields = try top.object("feature", allowed: ["audio", "audioTier", "merge"])
        let audio = try featureFields?.bool("audio") ?? false
        let tierName = try featureFields?.string("audioTier")
        let mergeAsked = try featureFields?.bool("merge")
        let modeName = try top.string("audioMode")
        let videoFields = try top.object("video", allowed: ["aspectRatio", "resolution", "seed", "negativePrompt"])
        let aspectRatio = try videoFields?.string("aspectRatio")
        let resolution = try videoFields?.string("resolution")
        let seed = try videoFields?.integer("seed")
        let negativePrompt = try videoFields?.string("negativePrompt")
        let metadata = try top.rawObject("metadata")
        let priorityName = try top.string("priority")
        let startTimeout = try top.integer("startTimeoutSeconds")
        let cache = try top.bool("cache")

        guard let prompt else { throw .failed("prompt", "is required") }
        try checkText(prompt, field: "prompt", allowEmpty: false)
        if let negativePrompt { try checkText(negativePrompt, field: "video.negativePrompt", allowEmpty: true) }

        var feature = JobFeature(audio: audio, audioTier: nil)
        var mode = AudioMode.parallel
        var audioModel: ModelCatalog.Model?
        if audio {
            let tier = tierName ?? catalog.defaultAudioTier
            guard let model = catalog.audioModel(tier: tier) else {
                throw .failed("feature.audioTier", "must be one of \(catalog.audioTiers.keys.sorted().joined(separator: ", "))")
            }
            feature.audioTier = tier
            audioModel = model
            if let modeName {
                guard let asked = AudioMode(rawValue: modeName) else {
                    throw .failed("audioMode", "must be one of parallel, after-video")
                }
                if asked == .parallel, model.needsVideo {
                    throw .failed("audioMode", "cannot be parallel with audioTier \(tier): it needs the finished video")
                }
                mode = asked
            } else {
                mode = model.needsVideo ? .afterVideo : .parallel
            }
        } else if let modeName, AudioMode(rawValue: modeName) == nil {
            throw .failed("audioMode", "must be one of parallel, after-video")
        }
        // One file to play: on by default for a separate audio track (a text-to-audio tier such as
        // `fast`); a video-to-audio tier's output already is the video with its sound.
        if mergeAsked == true, !audio { throw .failed("feature.merge", "needs feature.audio: there is no audio to merge") }
        if audio { feature.merge = mergeAsked ?? !(audioModel?.needsVideo ?? true) }

        let seconds = try duration.map { (value: String) throws(ClapperError) -> Int in
            guard let int = Int(value) else { throw .failed("durationSeconds", "is out of range") }
            return int
        } ?? defaultDurationSeconds
        let videoDurations = catalog.video.allowedDurations
        guard videoDurations.contains(seconds) else {
            throw .failed("durationSeconds", "must be \(describe(videoDurations)) seconds for \(catalog.video.id)")
        }
        if let audioModel, !audioModel.accepts(seconds: seconds) {
            throw .failed("durationSeconds", "must be \(describe(audioModel.allowedDurations)) seconds with audio (\(audioModel.id))")
        }

        if let aspectRatio, let allowed = catalog.video.aspectRatios, !allowed.contains(aspectRatio) {
            throw .failed("video.aspectRatio", "must be one of \(allowed.joined(separator: ", "))")
        }
        if let resolution, let allowed = catalog.video.resolutions, !allowed.contains(resolution) {
            throw .failed("video.resolution", "must be one of \(allowed.joined(separator: ", "))")
        }
        var seedValue: Int?
        if let seed {
            guard let value = Int(seed), value >= 0 else {
                throw .failed("video.seed", "must be an integer from 0 to \(Int.max)")
            }
            seedValue = value
        }
        if let metadata, metadata.count > maxMetadataBytes {
            throw .failed("metadata", "must be at most \(maxMetadataBytes) bytes of JSON text as sent")
        }

        var priority: JobPriority?
        if let priorityName {
            guard let value = JobPriority(rawValue: priorityName) else { throw .failed("priority", "must be one of normal, low") }
            priority = value
        }
        var startTimeoutSeconds: Int?
        if let startTimeout {
            guard let value = Int(startTimeout), (1...maxStartTimeoutSeconds).contains(value) else {
                throw .failed("startTimeoutSeconds", "must be a whole number of seconds from 1 to \(maxStartTimeoutSeconds)")
            }
            startTimeoutSeconds = value
        }

        var request = CreateJobRequest(
            prompt: prompt,
            durationSeconds: seconds,
            feature: feature,
            audioMode: mode,
            video: VideoOptions(aspectRatio: aspectRatio, resolution: resolution, seed: seedValue, negativePrompt: negativePrompt),
            metadata: metadata.map { String(decoding: $0, as: UTF8.self) }
        )
        request.priority = priority
        request.startTimeoutSeconds = startTimeoutSeconds
        request.cache = cache
        return request
    }

    /// The length first (code points and bytes, never grapheme clusters), so the whitespace
    /// check below only ever walks a bounded text.
    private static func checkText(_ text: String, field: String, allowEmpty: Bool) throws(ClapperError) {
        guard promptLimit.allows(text) else {
            throw .failed(field, "must be \(promptLimit.described)")
        }
        if !allowEmpty, text.allSatisfy({ $0.isWhitespace }) {
            throw .failed(field, "must not be empty or only whitespace")
        }
    }

    private static func describe(_ values: [Int]) -> String {
        guard let first = values.first, let last = values.last else { return "(none)" }
        if values.count == last - first + 1 { return first == last ? "\(first)" : "\(first) to \(last)" }
        return "one of " + values.map(String.init).joined(separator: ", ")
    }
}

/// The members of one JSON object of the request, read by type without converting numbers.
private struct Fields {
    let body: [UInt8]
    let prefix: String
    let values: [String: Range<Int>]

    /// What kind of JSON value starts with a byte (the text is already validated).
    enum Kind {
        case object, array, string, number, bool, null

        init(startingWith byte: UInt8) {
            switch byte {
            case UInt8(ascii: "{"): self = .object
            case UInt8(ascii: "["): self = .array
            case UInt8(ascii: "\""): self = .string
            case UInt8(ascii: "t"), UInt8(ascii: "f"): self = .bool
            case UInt8(ascii: "n"): self = .null
            default: self = .number
            }
        }
    }

    /// The members of the object in `bytes` with the range of each value in the whole body;
    /// nil unless `bytes` is one valid JSON object in UTF-8.
    static func members(of bytes: ArraySlice<UInt8>) -> [(key: String, range: Range<Int>)]? {
        guard String(validating: bytes, as: UTF8.self) != nil, let members = try? RawJSON.members(of: bytes) else { return nil }
        return members.map { ($0.key, $0.value.startIndex..<$0.value.endIndex) }
    }

    init(_ members: [(key: String, range: Range<Int>)], in body: [UInt8], prefix: String, allowed: Set<String>) throws(ClapperError) {
        var values: [String: Range<Int>] = [:]
        for member in members {
            guard values[member.key] == nil else { throw .invalidJSON("duplicate key \(TextLimit.shown(prefix + member.key, codePoints: 100))") }
            values[member.key] = member.range
        }
        // Report unknown fields in the order they were sent.
        if let unknown = members.first(where: { !allowed.contains($0.key) }) {
            throw .unknownField(prefix + unknown.key)
        }
        self.body = body
        self.prefix = prefix
        self.values = values
    }

    /// The value's range, nil when absent or null.
    private func range(_ key: String, expecting: Kind, described: String) throws(ClapperError) -> Range<Int>? {
        guard let range = values[key] else { return nil }
        let type = Kind(startingWith: body[range.lowerBound])
        if type == .null { return nil }
        guard type == expecting else { throw .invalidField(prefix + key, expected: described) }
        return range
    }

    func string(_ key: String) throws(ClapperError) -> String? {
        guard let range = try range(key, expecting: .string, described: "a string") else { return nil }
        guard let value = try? JSONDecoder().decode(String.self, from: Data(body[range])) else {
            throw .invalidField(prefix + key, expected: "a string")
        }
        return value
    }

    func bool(_ key: String) throws(ClapperError) -> Bool? {
        guard let range = try range(key, expecting: .bool, described: "true or false") else { return nil }
        return body[range.lowerBound] == UInt8(ascii: "t")
    }

    /// An integer's digits as sent (may be too large for `Int`: the caller range-checks).
    func integer(_ key: String) throws(ClapperError) -> String? {
        guard let range = try range(key, expecting: .number, described: "an integer") else { return nil }
        let text = String(decoding: body[range], as: UTF8.self)
        guard !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else {
            throw .invalidField(prefix + key, expected: "an integer")
        }
        return text
    }

    func object(_ key: String, allowed: Set<String>) throws(ClapperError) -> Fields? {
        guard let range = try range(key, expecting: .object, described: "an object") else { return nil }
        guard let members = Self.members(of: body[range]) else { throw .invalidField(prefix + key, expected: "an object") }
        return try Fields(members, in: body, prefix: prefix + key + ".", allowed: allowed)
    }

    /// The raw bytes of an object value, kept as sent.
    func rawObject(_ key: String) throws(ClapperError) -> ArraySlice<UInt8>? {
        guard let range = try range(key, expecting: .object, described: "an object") else { return nil }
        return body[range]
    }
}
