/// The models fal-sim knows (FAL-API.md's table), with their validation and output shapes.
/// Any other model id gets a generic output, so new catalog entries can be tried.
struct FalSimModelCatalog: Sendable {
    /// A seed larger than Int64, as real fal outputs carry.
    static let bigSeed = "17454220438242315174"

    /// Where media URLs point: the public base URL and the request id.
    struct MediaContext: Sendable {
        var baseURL: String
        var requestID: String

        func video() -> FalSimJSON {
            .object([
                "url": .string("\(baseURL)/_sim/media/video/\(requestID).mp4"),
                "content_type": .string("video/mp4"),
                "file_name": .string("\(requestID).mp4"),
                "file_size": .int(FalSimMedia.mp4.count),
            ])
        }

        func audio(seconds: Double) -> FalSimJSON {
            // Validated to 1...30 s by the caller; clamped anyway so no value can trap here.
            let bounded = seconds.isFinite ? min(max(seconds, 0), FalSimMedia.maximumWAVSeconds) : 0
            let millis = Int((bounded * 1000).rounded())
            return .object([
                "url": .string("\(baseURL)/_sim/media/audio/\(millis)/\(requestID).wav"),
                "content_type": .string("audio/wav"),
                "file_name": .string("\(requestID).wav"),
                "file_size": .int(FalSimMedia.wavSize(seconds: Double(millis) / 1000)),
            ])
        }
    }

    /// Runs `model` on `input` (the submitted body).
    func run(model: String, input body: FalSimJSON, media: MediaContext) -> FalSimModelResult {
        guard case .object(let input) = body else {
            return .failure(status: 422, body: .object(["detail": .array([.object([
                "loc": .array([.string("body")]),
                "msg": .string("value is not a valid dict"),
                "type": .string("type_error.dict"),
            ])])]))
        }
        var check = FalSimInputValidator(input: input)
        switch model {
        case "fal-ai/ltx-video-13b-distilled":
            let prompt = check.requiredString("prompt")
            check.optionalString("resolution", oneOf: ["480p", "720p"], default: "720p")
            check.optionalString("aspect_ratio", oneOf: ["9:16", "1:1", "16:9"], default: "16:9")
            check.number("num_frames", integer: true, default: 121, minimum: 9, maximum: 1441)
            check.number("frame_rate", default: 24, minimum: 1, maximum: 60)
            check.number("seed", integer: true, default: 0, minimum: 0)
            if let failure = check.failure { return failure }
            let seed = input["seed"].flatMap { $0 == .null ? nil : $0 } ?? .number(Self.bigSeed)
            return .output(.object(["video": media.video(), "seed": seed, "prompt": .string(prompt ?? "")]))
        case "cassetteai/sound-effects-generator":
            check.requiredString("prompt")
            let duration = check.number("duration", required: true, integer: true, default: 0, minimum: 1, maximum: 30)
            if let failure = check.failure { return failure }
            return .output(.object(["audio_file": media.audio(seconds: duration)]))
        case "fal-ai/mmaudio-v2", "fal-ai/mmaudio-v2/text-to-audio":
            let toVideo = model == "fal-ai/mmaudio-v2"
            if toVideo { check.requiredString("video_url") }
            check.requiredString("prompt")
            let duration = check.number("duration", default: 8, minimum: 1, maximum: 30)
            check.number("num_steps", integer: true, default: 25, minimum: 4, maximum: 50)
            check.number("cfg_strength", default: 4.5, minimum: 0, maximum: 20)
            check.number("seed", integer: true, default: 0, minimum: 0)
            if let failure = check.failure { return failure }
            return .output(toVideo ? .object(["video": media.video()]) : .object(["audio": media.audio(seconds: duration)]))
        case "fal-ai/ffmpeg-api/merge-audio-video":
            check.requiredString("video_url")
            check.requiredString("audio_url")
            check.number("start_offset", default: 0, minimum: 0)
            if let failure = check.failure { return failure }
            return .output(.object(["video": media.video()]))
        default:
            return .output(.object(["output": media.video()]))
        }
    }

    /// The body of the `fail` fault: a 422 like a real model's.
    static let simulatedFailure: FalSimModelResult = .failure(status: 422, body: .object(["detail": .array([.object([
        "loc": .array([.string("body"), .string("prompt")]),
        "msg": .string("simulated failure (fal-sim fault 'fail')"),
        "type": .string("value_error"),
    ])])]))

    /// The body of the `infra-error` fault: fal's infrastructure error (503, `error_type`).
    static func infrastructureFailure(type: String) -> FalSimModelResult {
        .failure(status: 503, body: .object([
            "detail": .string("Runner disconnected while processing the request (fal-sim fault 'infra-error')"),
            "error_type": .string(type),
        ]))
    }
}
