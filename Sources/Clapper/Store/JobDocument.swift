import Fal
import Foundation

/// A job's stored document (the `doc` field of its hash), written and read by hand.
///
/// It is the JSON that the synthesized `Codable` form gives with dates as milliseconds since
/// 1970: property names as keys, nil optionals left out, enums by raw value, `MicroUSD` as
/// `{"value": n}`. Either form reads what the other wrote (JobDocumentTests checks both ways on
/// random jobs), so instances of either version can share a Redis. Codable's generic machinery
/// was 14.6% of Clapper's CPU under webhook ingest (perf, bench 2026-12-03-0934): one decode and
/// one encode of the job per webhook.
enum JobDocument {
    /// The document is not a job: `path` names the first member that is missing or of the
    /// wrong type (`video.status`).
    struct Invalid: Error, CustomStringConvertible {
        let path: String
        var description: String { "stored job document: \(path) is missing or invalid" }
    }

    static func encode(_ job: Job) throws(Invalid) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("id", job.id)
        w.field("userID", job.userID)
        try w.date("createdAt", job.createdAt)
        try w.date("updatedAt", job.updatedAt)
        w.field("version", job.version)
        w.field("prompt", job.prompt)
        w.field("durationSeconds", job.durationSeconds)
        w.key("feature")
        w.beginObject()
        w.field("audio", job.feature.audio)
        w.present("audioTier", job.feature.audioTier)
        w.present("merge", job.feature.merge)
        w.endObject()
        w.field("audioMode", job.audioMode.rawValue)
        w.key("videoOptions")
        w.beginObject()
        w.present("aspectRatio", job.videoOptions.aspectRatio)
        w.present("resolution", job.videoOptions.resolution)
        w.present("seed", job.videoOptions.seed)
        w.present("negativePrompt", job.videoOptions.negativePrompt)
        w.endObject()
        w.present("metadata", job.metadata)
        w.key("video")
        try encode(job.video, to: &w)
        if let audio = job.audio {
            w.key("audio")
            try encode(audio, to: &w)
        }
        if let merge = job.merge {
            w.key("merge")
            try encode(merge, to: &w)
        }
        w.field("canceled", job.canceled)
        w.present("mediaLifetimeSeconds", job.mediaLifetimeSeconds)
        w.present("cache", job.cache)
        w.present("priority", job.priority?.rawValue)
        w.present("startTimeoutSeconds", job.startTimeoutSeconds)
        w.present("traceContext", job.traceContext)
        w.present("custody", job.custody)
        w.endObject()
        return w.bytes
    }

    private static func encode(_ task: JobTask, to w: inout JSONWriter) throws(Invalid) {
        w.beginObject()
        w.field("kind", task.kind.rawValue)
        w.field("model", task.model)
        w.field("status", task.status.rawValue)
        w.present("falRequestID", task.falRequestID)
        w.present("statusURL", task.statusURL)
        w.present("responseURL", task.responseURL)
        w.present("cancelURL", task.cancelURL)
        w.present("mediaURL", task.mediaURL)
        if let error = task.error {
            w.key("error")
            encode(error, to: &w)
        }
        try w.present("submitStartedAt", task.submitStartedAt)
        w.present("submitAttempt", task.submitAttempt)
        try w.present("lastTriedAt", task.lastTriedAt)
        try w.present("dueAt", task.dueAt)
        try w.present("submittedAt", task.submittedAt)
        try w.present("completedAt", task.completedAt)
        w.key("previousRequestIDs")
        w.array(task.previousRequestIDs) { w, id in w.string(id) }
        w.field("attempts", task.attempts)
        if let cost = task.estimatedCost {
            w.key("estimatedCost")
            w.beginObject()
            w.key("value")
            w.int64(cost.value)
            w.endObject()
        }
        w.present("cached", task.cached)
        try w.present("startedAt", task.startedAt)
        if let progress = task.progress {
            w.key("progress")
            w.beginObject()
            w.present("queuePosition", progress.queuePosition)
            w.key("logs")
            w.array(progress.logs) { w, line in
                w.beginObject()
                w.field("message", line.message)
                w.present("level", line.level)
                w.present("timestamp", line.timestamp)
                w.endObject()
            }
            w.endObject()
        }
        w.present("waiting", task.waiting)
        w.present("waitPosition", task.waitPosition)
        w.present("traceContext", task.traceContext)
        w.present("storedURL", task.storedURL)
        if let storeError = task.storeError {
            w.key("storeError")
            encode(storeError, to: &w)
        }
        w.endObject()
    }

    private static func encode(_ error: TaskError, to w: inout JSONWriter) {
        w.beginObject()
        w.field("code", error.code)
        w.field("message", error.message)
        w.present("detail", error.detail)
        w.endObject()
    }

    // MARK: Reading

    static func decode(_ bytes: [UInt8]) throws(Invalid) -> Job {
        try decodeJob(bytes[...])
    }

    static func decode(_ bytes: ArraySlice<UInt8>) throws(Invalid) -> Job {
        try decodeJob(bytes)
    }

    private static func decodeJob(_ bytes: ArraySlice<UInt8>) throws(Invalid) -> Job {
        var id: String?, userID: String?, prompt: String?
        var createdAt: Date?, updatedAt: Date?
        var version: Int?, durationSeconds: Int?
        var feature: JobFeature?, audioMode: AudioMode?, videoOptions: VideoOptions?
        var video: JobTask?, audio: JobTask?, merge: JobTask?
        var canceled: Bool?
        var metadata: String?, traceContext: String?
        var mediaLifetimeSeconds: Int?, startTimeoutSeconds: Int?
        var cache: Bool?, custody: Bool?
        var priority: JobPriority?
        for member in try members(bytes, "job") {
            let raw = member.value
            guard !RawJSON.isNull(raw) else { continue }
            switch member.key {
            case "id": id = try string(raw, "id")
            case "userID": userID = try string(raw, "userID")
            case "createdAt": createdAt = try date(raw, "createdAt")
            case "updatedAt": updatedAt = try date(raw, "updatedAt")
            case "version": version = try int(raw, "version")
            case "prompt": prompt = try string(raw, "prompt")
            case "durationSeconds": durationSeconds = try int(raw, "durationSeconds")
            case "feature": feature = try decodeFeature(raw)
            case "audioMode": audioMode = try rawValue(raw, "audioMode")
            case "videoOptions": videoOptions = try decodeVideoOptions(raw)
            case "metadata": metadata = try string(raw, "metadata")
            case "video": video = try decodeTask(raw, "video")
            case "audio": audio = try decodeTask(raw, "audio")
            case "merge": merge = try decodeTask(raw, "merge")
            case "canceled": canceled = try bool(raw, "canceled")
            case "mediaLifetimeSeconds": mediaLifetimeSeconds = try int(raw, "mediaLifetimeSeconds")
            case "cache": cache = try bool(raw, "cache")
            case "priority": priority = try rawValue(raw, "priority")
            case "startTimeoutSeconds": startTimeoutSeconds = try int(raw, "startTimeoutSeconds")
            case "traceContext": traceContext = try string(raw, "traceContext")
            case "custody": custody = try bool(raw, "custody")
            default: continue
            }
        }
        var job = Job(
            id: try required(id, "id"),
            userID: try required(userID, "userID"),
            createdAt: try required(createdAt, "createdAt"),
            updatedAt: try required(updatedAt, "updatedAt"),
            version: try required(version, "version"),
            prompt: try required(prompt, "prompt"),
            durationSeconds: try required(durationSeconds, "durationSeconds"),
            feature: try required(feature, "feature"),
            audioMode: try required(audioMode, "audioMode"),
            videoOptions: try required(videoOptions, "videoOptions"),
            metadata: metadata,
            video: try required(video, "video"),
            audio: audio,
            merge: merge,
            canceled: try required(canceled, "canceled"),
            priority: priority,
            startTimeoutSeconds: startTimeoutSeconds,
            cache: cache
        )
        job.mediaLifetimeSeconds = mediaLifetimeSeconds
        job.traceContext = traceContext
        job.custody = custody
        return job
    }

    private static func decodeFeature(_ bytes: ArraySlice<UInt8>) throws(Invalid) -> JobFeature {
        var audio: Bool?, audioTier: String?, merge: Bool?
        for member in try members(bytes, "feature") where !RawJSON.isNull(member.value) {
            switch member.key {
            case "audio": audio = try bool(member.value, "feature.audio")
            case "audioTier": audioTier = try string(member.value, "feature.audioTier")
            case "merge": merge = try bool(member.value, "feature.merge")
            default: continue
            }
        }
        return JobFeature(audio: try required(audio, "feature.audio"), audioTier: audioTier, merge: merge)
    }

    private static func decodeVideoOptions(_ bytes: ArraySlice<UInt8>) throws(Invalid) -> VideoOptions {
        var options = VideoOptions()
        for member in try members(bytes, "videoOptions") where !RawJSON.isNull(member.value) {
            switch member.key {
            case "aspectRatio": options.aspectRatio = try string(member.value, "videoOptions.aspectRatio")
            case "resolution": options.resolution = try string(member.value, "videoOptions.resolution")
            case "seed": options.seed = try int(member.value, "videoOptions.seed")
            case "negativePrompt": options.negativePrompt = try string(member.value, "videoOptions.negativePrompt")
            default: continue
            }
        }
        return options
    }

    private static func decodeTask(_ bytes: ArraySlice<UInt8>, _ name: String) throws(Invalid) -> JobTask {
        var kind: TaskKind?, model: String?, status: TaskStatus?
        var previousRequestIDs: [String]?, attempts: Int?
        var task = JobTask(kind: .video, model: "")
        for member in try members(bytes, name) {
            let raw = member.value
            guard !RawJSON.isNull(raw) else { continue }
            let path = name + "." + member.key
            switch member.key {
            case "kind": kind = try rawValue(raw, path)
            case "model": model = try string(raw, path)
            case "status": status = try rawValue(raw, path)
            case "falRequestID": task.falRequestID = try string(raw, path)
            case "statusURL": task.statusURL = try string(raw, path)
            case "responseURL": task.responseURL = try string(raw, path)
            case "cancelURL": task.cancelURL = try string(raw, path)
            case "mediaURL": task.mediaURL = try string(raw, path)
            case "error": task.error = try decodeError(raw, path)
            case "submitStartedAt": task.submitStartedAt = try date(raw, path)
            case "submitAttempt": task.submitAttempt = try string(raw, path)
            case "lastTriedAt": task.lastTriedAt = try date(raw, path)
            case "dueAt": task.dueAt = try date(raw, path)
            case "submittedAt": task.submittedAt = try date(raw, path)
            case "completedAt": task.completedAt = try date(raw, path)
            case "previousRequestIDs":
                var ids: [String] = []
                for element in try elements(raw, path) { ids.append(try string(element, path)) }
                previousRequestIDs = ids
            case "attempts": attempts = try int(raw, path)
            case "estimatedCost":
                var value: Int64?
                for cost in try members(raw, path) where cost.key == "value" { value = try int64(cost.value, path + ".value") }
                task.estimatedCost = MicroUSD(try required(value, path + ".value"))
            case "cached": task.cached = try bool(raw, path)
            case "startedAt": task.startedAt = try date(raw, path)
            case "progress": task.progress = try decodeProgress(raw, path)
            case "waiting": task.waiting = try bool(raw, path)
            case "waitPosition": task.waitPosition = try int(raw, path)
            case "traceContext": task.traceContext = try string(raw, path)
            case "storedURL": task.storedURL = try string(raw, path)
            case "storeError": task.storeError = try decodeError(raw, path)
            default: continue
            }
        }
        task.kind = try required(kind, name + ".kind")
        task.model = try required(model, name + ".model")
        task.status = try required(status, name + ".status")
        task.previousRequestIDs = try required(previousRequestIDs, name + ".previousRequestIDs")
        task.attempts = try required(attempts, name + ".attempts")
        return task
    }

    private static func decodeError(_ bytes: ArraySlice<UInt8>, _ path: String) throws(Invalid) -> TaskError {
        var code: String?, message: String?, detail: String?
        for member in try members(bytes, path) where !RawJSON.isNull(member.value) {
            switch member.key {
            case "code": code = try string(member.value, path + ".code")
            case "message": message = try string(member.value, path + ".message")
            case "detail": detail = try string(member.value, path + ".detail")
            default: continue
            }
        }
        return TaskError(code: try required(code, path + ".code"), message: try required(message, path + ".message"), detail: detail)
    }

    /// Set member by member, as Codable does: `TaskProgress.init` would cut what it is given.
    private static func decodeProgress(_ bytes: ArraySlice<UInt8>, _ path: String) throws(Invalid) -> TaskProgress {
        var progress = TaskProgress()
        var logs: [TaskProgress.LogLine]?
        for member in try members(bytes, path) where !RawJSON.isNull(member.value) {
            switch member.key {
            case "queuePosition": progress.queuePosition = try int(member.value, path + ".queuePosition")
            case "logs":
                var lines: [TaskProgress.LogLine] = []
                for element in try elements(member.value, path + ".logs") {
                    var message: String?
                    var line = TaskProgress.LogLine(message: "")
                    for field in try members(element, path + ".logs") where !RawJSON.isNull(field.value) {
                        switch field.key {
                        case "message": message = try string(field.value, path + ".logs.message")
                        case "level": line.level = try string(field.value, path + ".logs.level")
                        case "timestamp": line.timestamp = try string(field.value, path + ".logs.timestamp")
                        default: continue
                        }
                    }
                    line.message = try required(message, path + ".logs.message")
                    lines.append(line)
                }
                logs = lines
            default: continue
            }
        }
        progress.logs = try required(logs, path + ".logs")
        return progress
    }

    // MARK: Values

    private static func members(_ bytes: ArraySlice<UInt8>, _ path: String) throws(Invalid) -> [RawJSON.Member] {
        do { return try RawJSON.members(of: bytes) } catch { throw Invalid(path: path) }
    }

    private static func elements(_ bytes: ArraySlice<UInt8>, _ path: String) throws(Invalid) -> [ArraySlice<UInt8>] {
        do { return try RawJSON.elements(of: bytes) } catch { throw Invalid(path: path) }
    }

    private static func required<T>(_ value: T?, _ path: String) throws(Invalid) -> T {
        guard let value else { throw Invalid(path: path) }
        return value
    }

    private static func string(_ raw: ArraySlice<UInt8>, _ path: String) throws(Invalid) -> String {
        guard let value = RawJSON.string(raw) else { throw Invalid(path: path) }
        return value
    }

    private static func rawValue<T: RawRepresentable<String>>(_ raw: ArraySlice<UInt8>, _ path: String) throws(Invalid) -> T {
        guard let value = T(rawValue: try string(raw, path)) else { throw Invalid(path: path) }
        return value
    }

    private static func bool(_ raw: ArraySlice<UInt8>, _ path: String) throws(Invalid) -> Bool {
        if raw.elementsEqual("true".utf8) { return true }
        if raw.elementsEqual("false".utf8) { return false }
        throw Invalid(path: path)
    }

    private static func int(_ raw: ArraySlice<UInt8>, _ path: String) throws(Invalid) -> Int {
        guard let value = Int(exactly: try int64(raw, path)) else { throw Invalid(path: path) }
        return value
    }

    /// An integer in plain digits, overflow checked; one written as `5.0` or `5e0` is read
    /// through `Double` and taken when exact, as Codable does.
    private static func int64(_ raw: ArraySlice<UInt8>, _ path: String) throws(Invalid) -> Int64 {
        var index = raw.startIndex
        let negative = index < raw.endIndex && raw[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        guard index < raw.endIndex else { throw Invalid(path: path) }
        var value: Int64 = 0
        while index < raw.endIndex {
            let byte = raw[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else {
                guard let exact = Int64(exactly: try double(raw, path)) else { throw Invalid(path: path) }
                return exact
            }
            let digit = Int64(byte - UInt8(ascii: "0"))
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = negative ? times10.subtractingReportingOverflow(digit) : times10.addingReportingOverflow(digit)
            guard !overflow1, !overflow2 else { throw Invalid(path: path) }
            value = next
            index += 1
        }
        return value
    }

    private static func double(_ raw: ArraySlice<UInt8>, _ path: String) throws(Invalid) -> Double {
        // Only a JSON number (a sign or a digit first): `Double(String)` also reads "nan", "inf"
        // and hex floats, which are not JSON.
        guard let first = raw.first, first == UInt8(ascii: "-") || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")),
              let value = Double(String(decoding: raw, as: UTF8.self)), value.isFinite else { throw Invalid(path: path) }
        return value
    }

    private static func date(_ raw: ArraySlice<UInt8>, _ path: String) throws(Invalid) -> Date {
        Date(timeIntervalSince1970: try double(raw, path) / 1000)
    }
}

extension JSONWriter {
    /// `name` and the value, left out when nil (as Codable's `encodeIfPresent`).
    fileprivate mutating func present(_ name: String, _ value: String?) {
        if let value { field(name, value) }
    }

    fileprivate mutating func present(_ name: String, _ value: Int?) {
        if let value { field(name, value) }
    }

    fileprivate mutating func present(_ name: String, _ value: Bool?) {
        if let value { field(name, value) }
    }

    fileprivate mutating func present(_ name: String, _ value: Date?) throws(JobDocument.Invalid) {
        if let value { try date(name, value) }
    }

    /// Milliseconds since 1970 as a number, in the shortest form that reads back as the same
    /// `Double` (Swift's `description`; `.0` dropped from whole numbers, as JSONEncoder does).
    fileprivate mutating func date(_ name: String, _ value: Date) throws(JobDocument.Invalid) {
        let milliseconds = 1000 * value.timeIntervalSince1970
        guard milliseconds.isFinite else { throw JobDocument.Invalid(path: name) }
        key(name)
        var text = milliseconds.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        number(text)
    }
}
