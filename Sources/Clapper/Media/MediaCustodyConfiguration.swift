import S3

/// Media custody (`CLAPPER_MEDIA_*`): where finished media is copied, and how its URLs are
/// handed out. Off (nil in `ClapperConfiguration.media`) unless a bucket URL is given.
public struct MediaCustodyConfiguration: Sendable {
    /// The bucket, path-style (`http://host:9000/bucket`) or virtual-hosted
    /// (`https://bucket.s3.region.amazonaws.com`).
    public var location: S3Location
    public var region: String
    /// Never logged (its description redacts the secret).
    public var credentials: S3Credentials
    /// Keys are `{prefix}/video/{jobId}.{ext}`, `{prefix}/audio/…`, `{prefix}/merged/…`.
    public var keyPrefix: String
    /// When set, the copies are handed out as `{publicBaseURL}/{key}`; otherwise as presigned GET
    /// URLs, signed anew whenever a job is read or a change is streamed.
    public var publicBaseURL: String?
    /// Lifetime of a presigned URL (1...604800 s).
    public var presignSeconds: Int
    /// A copy that has not succeeded this long after its task completed fails for good
    /// (`<task>StoreError`); never later than the job's `mediaExpiresAt` either.
    public var deadline: Duration
    /// Bytes fetched from fal and sent to the bucket at a time: the memory one copy holds. A file
    /// larger than this goes up as a multipart upload of parts this size (S3's minimum is 5 MiB).
    public var partSize: Int
    /// How often the store set is looked at when it had nothing due.
    public var interval: Duration
    /// Copies run at once per instance.
    public var concurrency: Int

    public init(
        location: S3Location,
        region: String = "us-east-1",
        credentials: S3Credentials,
        keyPrefix: String = "clapper",
        publicBaseURL: String? = nil,
        presignSeconds: Int = 3600,
        deadline: Duration = .seconds(3600),
        partSize: Int = 8 * 1024 * 1024,
        interval: Duration = .milliseconds(500),
        concurrency: Int = 4
    ) {
        self.location = location
        self.region = region
        self.credentials = credentials
        self.keyPrefix = keyPrefix
        self.publicBaseURL = publicBaseURL
        self.presignSeconds = presignSeconds
        self.deadline = deadline
        // S3 takes parts of 5 MiB and up (the environment variable holds to that); a test server
        // may take smaller ones.
        self.partSize = max(1024, partSize)
        self.interval = interval
        self.concurrency = max(1, concurrency)
    }
}
