import Synchronization

/// The last version of recently changed jobs this instance wrote or read, so the usual change (a
/// webhook for a job this instance just submitted) skips one Redis read and one JSON decode.
///
/// Only a hint: every write is still a compare-and-set on `version`, so a stale entry (another
/// instance changed the job) fails its write and the store reads Redis again; and a change that
/// the rules ignore on a cached state is decided again on a fresh read, so a stale state can
/// never make a real event look like a repeat. Bounded: past `capacity` entries, half are dropped.
final class JobCache: Sendable {
    private let entries = Mutex<[String: JobStore.Loaded]>([:])
    let capacity: Int

    init(capacity: Int = 1024) {
        self.capacity = max(1, capacity)
    }

    func get(_ jobID: String) -> JobStore.Loaded? {
        entries.withLock { $0[jobID] }
    }

    /// Keeps `loaded` unless a newer version of the job is already here.
    func put(_ loaded: JobStore.Loaded) {
        entries.withLock { entries in
            if let current = entries[loaded.job.id], current.job.version > loaded.job.version { return }
            if entries.count >= capacity, entries[loaded.job.id] == nil {
                // The keys are copied out first: removing while a view of the keys is alive
                // would copy the whole dictionary (copy-on-write).
                let victims = Array(entries.keys.prefix(capacity / 2 + 1))
                for key in victims { entries.removeValue(forKey: key) }
            }
            entries[loaded.job.id] = loaded
        }
    }

    func remove(_ jobID: String) {
        _ = entries.withLock { $0.removeValue(forKey: jobID) }
    }
}
