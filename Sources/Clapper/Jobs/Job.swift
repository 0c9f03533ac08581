import Foundation

/// `feature` as the product design names it.
public struct JobFeature: Codable, Sendable, Hashable {
    public var audio: Bool
    /// The audio tier (`fast`, `synced`, …); nil when no audio was asked for.
    public var audioTier: String?
    /// Merge the finished video and audio into one file (a third task); nil in jobs made before
    /// merging existed (read as off).
    public var merge: Bool?

    public init(audio: Bool, audioTier: String? = nil, merge: Bool? = nil) {
        self.audio = audio
        self.audioTier = audioTier
        self.merge = merge
    }
}

/// When the audio is submitted.
public enum AudioMode: String, Codable, Sendable, Hashable, CaseIterable {
    /// Video and audio are submitted at once.
    case parallel
    /// The audio is submitted when the video completes (always the case for video-to-audio tiers).
    case afterVideo = "after-video"
}

/// The client's options for the video model; nil means the model's default.
public struct VideoOptions: Codable, Sendable, Hashable {
    public var aspectRatio: String?
    public var resolution: String?
    public var seed: Int?
    public var negativePrompt: String?

    public init(aspectRatio: String? = nil, resolution: String? = nil, seed: Int? = nil, negativePrompt: String? = nil) {
        self.aspectRatio = aspectRatio
        self.resolution = resolution
        self.seed = seed
        self.negativePrompt = negativePrompt
    }
}

/// fal's queue priority (`X-Fal-Queue-Priority`).
public enum JobPriority: String, Codable, Sendable, Hashable, CaseIterable {
    case normal
    case low
}

/// A job's status, derived from its tasks (see `Job.status`).
public enum JobStatus: String, Codable, Sendable, Hashable, CaseIterable {
    case queued
    case running
    case completed
    case failed
    case canceled

    public var isFinished: Bool {
        switch self {
        case .queued, .running: false
        case .completed, .failed, .canceled: true
        }
    }
}

/// One client request: a video and, when `feature.audio` is on, a matching audio track.
/// A pure value: the store persists it, `apply` and `cancel` hold the rules.
public struct Job: Codable, Sendable, Hashable {
    public var id: String
    public var userID: String
    public var createdAt: Date
    public var updatedAt: Date
    /// Grows by one with every stored change; the store bumps it, never the rules here.
    public var version: Int
    public var prompt: String
    public var durationSeconds: Int
    public var feature: JobFeature
    public var audioMode: AudioMode
    public var videoOptions: VideoOptions
    /// The client's `metadata` object as raw JSON text, exactly as sent.
    public var metadata: String?
    public var video: JobTask
    /// Present exactly when `feature.audio` is on.
    public var audio: JobTask?
    /// Present exactly when `feature.merge` is on: submitted once video and audio both completed.
    public var merge: JobTask?
    /// Set by a job-level cancel.
    public var canceled: Bool
    /// How long fal was asked to keep this job's output media (sent with every submit); nil:
    /// fal's default. Kept on the job so the view and the submits agree after a config change.
    public var mediaLifetimeSeconds: Int?
    /// The client asked for the result cache (`cache: true`), whatever the server default.
    public var cache: Bool?
    /// fal's queue priority for every task; nil: fal's default.
    public var priority: JobPriority?
    /// fal's start deadline for every task (`X-Fal-Request-Timeout`), in seconds.
    public var startTimeoutSeconds: Int?
    /// The W3C `traceparent` of the request that created it, when tracing is on: its tasks'
    /// spans join that trace on whichever instance sends them.
    public var traceContext: String?
    /// Media custody was on when it was made: its completed media is copied into the operator's
    /// bucket and the view hands out the copy (`ClapperConfiguration.media`).
    public var custody: Bool?

    /// The tasks' estimates added up; nil when no task has one (jobs made before estimates).
    public var estimatedCost: MicroUSD? {
        let costs = tasks.compactMap(\.estimatedCost)
        return costs.isEmpty ? nil : costs.reduce(MicroUSD(0), +)
    }

    /// When the first of the job's finished media expires at fal (`completedAt` + the lifetime);
    /// nil before any media exists or without a lifetime.
    public var mediaExpiresAt: Date? {
        guard let seconds = mediaLifetimeSeconds else { return nil }
        return tasks.compactMap { task in task.mediaURL == nil ? nil : task.completedAt }.min().map { $0.addingTimeInterval(TimeInterval(seconds)) }
    }

    public init(
        id: String,
        userID: String,
        createdAt: Date,
        updatedAt: Date? = nil,
        version: Int = 1,
        prompt: String,
        durationSeconds: Int,
        feature: JobFeature,
        audioMode: AudioMode,
        videoOptions: VideoOptions = VideoOptions(),
        metadata: String? = nil,
        video: JobTask,
        audio: JobTask? = nil,
        merge: JobTask? = nil,
        canceled: Bool = false,
        priority: JobPriority? = nil,
        startTimeoutSeconds: Int? = nil,
        cache: Bool? = nil
    ) {
        self.cache = cache
        self.priority = priority
        self.startTimeoutSeconds = startTimeoutSeconds
        self.id = id
        self.userID = userID
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
        self.version = version
        self.prompt = prompt
        self.durationSeconds = durationSeconds
        self.feature = feature
        self.audioMode = audioMode
        self.videoOptions = videoOptions
        self.metadata = metadata
        self.video = video
        self.audio = audio
        self.merge = merge
        self.canceled = canceled
    }

    /// The task of `kind`, nil for audio when none was requested.
    public func task(_ kind: TaskKind) -> JobTask? {
        switch kind {
        case .video: video
        case .audio: audio
        case .merge: merge
        }
    }

    /// The requested tasks: video, audio, merge.
    public var tasks: [JobTask] {
        [video] + [audio, merge].compactMap { $0 }
    }

    /// - `canceled` when the job was canceled (or fal canceled the video);
    /// - `failed` when the video failed or timed out;
    /// - `completed` when the video completed and the audio and merge, if requested, are terminal,
    ///   whatever became of them (a failed audio shows in `audioStatus` / `audioError`, a failed
    ///   merge in `mergeStatus` / `mergeError`);
    /// - `running` when any requested task is running or finished;
    /// - `queued` otherwise.
    public var status: JobStatus {
        if canceled { return .canceled }
        switch video.status {
        case .failed, .timedOut: return .failed
        case .canceled: return .canceled
        case .completed where (audio?.status.isTerminal ?? true) && (merge?.status.isTerminal ?? true): return .completed
        default: break
        }
        if tasks.contains(where: { $0.status.rank >= TaskStatus.running.rank }) { return .running }
        return .queued
    }

    public var isFinished: Bool { status.isFinished }

    /// When the task of `kind` became due for a submit: its `dueAt` (a retry), the video's
    /// completion for an after-video audio, the later of the two for the merge, the job's creation
    /// otherwise; nil while an after-video audio waits for its video, or the merge for either. The clock a submit that never reaches fal is given up on.
    public func dueSince(_ kind: TaskKind) -> Date? {
        guard let task = task(kind) else { return nil }
        let start: Date?
        if kind == .merge {
            start = mergeInputsReady ? [video.completedAt, audio?.completedAt].compactMap { $0 }.max() ?? updatedAt : nil
        } else if kind == .audio, audioMode == .afterVideo {
            start = video.status == .completed ? (video.completedAt ?? updatedAt) : nil
        } else {
            start = createdAt
        }
        guard let start else { return nil }
        return max(start, task.dueAt ?? start)
    }

    /// Tasks that should be submitted now and have not started a submit: the video while pending,
    /// the audio while pending in parallel mode, or in after-video mode once the video completed.
    /// For job creation and crash recovery; `apply` returns `.submit` actions for the transitions.
    public var submissionsDue: [TaskKind] {
        guard !canceled else { return [] }
        var due: [TaskKind] = []
        if video.status == .pending, video.submitStartedAt == nil { due.append(.video) }
        if let audio, audio.status == .pending, audio.submitStartedAt == nil,
           audioMode == .parallel || video.status == .completed {
            due.append(.audio)
        }
        if let merge, merge.status == .pending, merge.submitStartedAt == nil, mergeInputsReady { due.append(.merge) }
        return due
    }

    /// Video and audio both completed with media: the merge can be submitted.
    public var mergeInputsReady: Bool {
        video.status == .completed && video.mediaURL != nil && audio?.status == .completed && audio?.mediaURL != nil
    }
}
