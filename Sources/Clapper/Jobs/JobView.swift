import Foundation

/// The public JSON view of a job: the body of `GET /v1/jobs/{id}` (and of the job in other answers).
///
/// Written by hand so fal's raw outputs are spliced in byte for byte: they can hold numbers no
/// `Int64`/`Double` represents, which a `Codable` or `JSONSerialization` round trip would change.
/// Every field is always present; what does not apply is `null` (all `audio…` fields and
/// `audioMode` when no audio was requested). Dates are ISO 8601, UTC, with milliseconds.
public enum JobView {
    /// Prefix of `audioError`, as the product design words it.
    public static let audioErrorPrefix = "Audio generation failed: "

    /// - Parameters:
    ///   - videoOutput, audioOutput: fal's raw output (or error payload) bytes; spliced as they are
    ///     when they are one valid JSON value, `null` otherwise.
    ///   - eventsURL: when given, adds `eventsUrl` (the job's SSE stream).
    public static func encode(_ job: Job, videoOutput: [UInt8]?, audioOutput: [UInt8]?, eventsURL: String? = nil) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("jobId", job.id)
        w.field("status", job.status.rawValue)
        w.field("version", job.version)
        w.field("createdAt", Timestamp.iso8601(job.createdAt))
        w.field("updatedAt", Timestamp.iso8601(job.updatedAt))
        w.field("prompt", job.prompt)
        w.field("durationSeconds", job.durationSeconds)

        w.key("feature")
        w.beginObject()
        w.field("audio", job.feature.audio)
        w.field("audioTier", job.audio == nil ? nil : job.feature.audioTier)
        w.field("merge", job.merge != nil)
        w.endObject()
        w.field("audioMode", job.audio == nil ? nil : job.audioMode.rawValue)

        w.key("video")
        w.beginObject()
        w.field("aspectRatio", job.videoOptions.aspectRatio)
        w.field("resolution", job.videoOptions.resolution)
        w.field("seed", job.videoOptions.seed)
        w.field("negativePrompt", job.videoOptions.negativePrompt)
        w.endObject()

        w.field("priority", job.priority?.rawValue)
        w.field("startTimeoutSeconds", job.startTimeoutSeconds)

        w.key("metadata")
        w.raw(job.metadata.map { Array($0.utf8) })

        w.field("videoModel", job.video.model)
        w.field("videoStatus", statusName(job.video))
        w.field("videoUrl", handedOut(job.video, job))
        custody(job.video, job, prefix: "video", sourceName: "videoSourceUrl", into: &w)
        w.field("videoError", job.video.error?.message)
        w.field("videoErrorCode", job.video.error?.code)
        w.field("videoErrorDetail", job.video.error?.detail)
        w.field("videoRequestId", job.video.falRequestID)
        w.field("videoCached", job.video.cached ?? false)
        progress(job.video, prefix: "video", into: &w)

        let audio = job.audio
        w.field("audioModel", audio?.model)
        w.field("audioStatus", audio.map(statusName))
        w.field("audioUrl", audio.flatMap { handedOut($0, job) })
        if let audio { custody(audio, job, prefix: "audio", sourceName: "audioSourceUrl", into: &w) }
        w.field("audioError", audio?.error.map { audioErrorPrefix + $0.message })
        w.field("audioErrorCode", audio?.error?.code)
        w.field("audioErrorDetail", audio?.error?.detail)
        w.field("audioRequestId", audio?.falRequestID)
        w.rawField("audioCached", audio.map { Array(($0.cached == true ? "true" : "false").utf8) })
        if let audio {
            progress(audio, prefix: "audio", into: &w)
        } else {
            for name in ["audioQueuePosition", "audioStartedAt", "audioLogs"] { w.field(name, nil as String?) }
        }

        let merge = job.merge
        w.field("mergeStatus", merge.map(statusName))
        w.field("mergedUrl", merge.flatMap { handedOut($0, job) })
        if let merge { custody(merge, job, prefix: "merge", sourceName: "mergedSourceUrl", into: &w) }
        w.field("mergeError", merge?.error?.message)
        w.field("mergeErrorCode", merge?.error?.code)
        w.field("mergeRequestId", merge?.falRequestID)

        w.rawField("estimatedCostUsd", job.estimatedCost.map { Array($0.json.utf8) })
        w.rawField("videoEstimatedCostUsd", job.video.estimatedCost.map { Array($0.json.utf8) })
        w.rawField("audioEstimatedCostUsd", audio?.estimatedCost.map { Array($0.json.utf8) })
        w.rawField("mergeEstimatedCostUsd", merge?.estimatedCost.map { Array($0.json.utf8) })
        w.field("mediaExpiresAt", job.mediaExpiresAt.map(Timestamp.iso8601))
        w.rawField("videoOutput", videoOutput)
        w.rawField("audioOutput", audio == nil ? nil : audioOutput)
        if let eventsURL { w.field("eventsUrl", eventsURL) }
        w.endObject()
        return w.bytes
    }

    /// The task's media as handed out: the bucket's copy once made (media custody), else fal's.
    private static func handedOut(_ task: JobTask, _ job: Job) -> String? {
        job.custody == true ? task.storedURL ?? task.mediaURL : task.mediaURL
    }

    /// With media custody: `<task>SourceUrl` (fal's URL), `<task>Stored` (the bucket's copy is
    /// what `…Url` gives; false while it is owed or after it failed; null with no media to copy)
    /// and `<task>StoreError`.
    private static func custody(_ task: JobTask, _ job: Job, prefix: String, sourceName: String, into w: inout JSONWriter) {
        guard job.custody == true else { return }
        w.field(sourceName, task.mediaURL)
        // null while there is no media to copy (not completed, or completed without media).
        w.field(prefix + "Stored", task.mediaURL == nil || task.status != .completed ? nil : task.storedURL != nil)
        w.field(prefix + "StoreError", task.storeError?.message)
    }

    /// A task's status as the API names it: `waiting` for a pending task in Clapper's line.
    private static func statusName(_ task: JobTask) -> String {
        task.status == .pending && task.waiting == true ? "waiting" : task.status.rawValue
    }

    /// `<task>QueuePosition` (fal's place in its queue while queued), `<task>StartedAt` (when it
    /// was first seen running) and `<task>Logs` (fal's newest log lines, at most
    /// `TaskProgress.maxLines`); null when not known.
    private static func progress(_ task: JobTask, prefix: String, into w: inout JSONWriter) {
        w.field(prefix + "QueuePosition", task.status == .queued ? task.progress?.queuePosition : task.waiting == true ? task.waitPosition : nil)
        w.field(prefix + "StartedAt", task.startedAt.map(Timestamp.iso8601))
        w.key(prefix + "Logs")
        if let logs = task.progress?.logs, !logs.isEmpty {
            w.array(logs) { w, line in
                w.beginObject()
                w.field("message", line.message)
                w.field("level", line.level)
                w.field("timestamp", line.timestamp)
                w.endObject()
            }
        } else {
            w.null()
        }
    }
}
