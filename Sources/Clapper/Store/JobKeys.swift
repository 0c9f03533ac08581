/// Where a job lives in Redis. A job's own keys share the hash tag `{jobId}`, so one job is one
/// Redis Cluster slot; the indexes are global keys.
struct JobKeys: Sendable {
    let prefix: String

    init(prefix: String = "clapper") {
        self.prefix = prefix
    }

    /// Hash: `version`, `user`, `doc` (internal JSON), `view` (the public JSON), `output:<task>` (fal's raw bytes).
    func job(_ id: String) -> String { "\(prefix):{\(id)}:job" }
    /// Stream of changes, field `job` = the public JSON after the change; capped.
    func events(_ id: String) -> String { "\(prefix):{\(id)}:events" }
    /// Channel every change is published on: `{"jobId","userId","id","job"}`.
    var channel: String { "\(prefix):events" }
    /// Sorted set of unfinished tasks (`jobId|task`) by next-check time in ms.
    var due: String { "\(prefix):due" }
    /// Hash: fal request id -> `jobId|task`.
    var requests: String { "\(prefix):requests" }
    /// Sorted set of a user's jobs by creation time in ms.
    func userJobs(_ userID: String) -> String { "\(prefix):user:{\(userID)}:jobs" }
    /// String: `jobId bodyHash` for an Idempotency-Key (the key's SHA-256), kept 24 h.
    func idempotency(userID: String, keyHash: String) -> String { "\(prefix):idem:{\(userID)}:\(keyHash)" }
}
