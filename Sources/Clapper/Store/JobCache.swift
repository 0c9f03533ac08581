import NIOCore
import Synchronization

/// The last version of recently changed jobs this instance wrote or read, so the usual change (a
/// webhook for a job this instance created and submitted) skips one Redis read and one document decode.
///
/// Only a hint: every write is still a compare-and-set on `version`, so a stale entry (another
/// instance changed the job) fails its write and the store reads Redis again; and a change that
/// the rules ignore on a cached state is decided again on a fresh read, so a stale state can
/// never make a real event look like a repeat.
///
/// Bounded: past `capacity` jobs, the one put longest ago goes first. Jobs whose tasks have all
/// finished are not kept (`JobStore` removes them): a repeat for them is decided on a fresh read anyway.
final class JobCache: Sendable {
    /// Enough for every job in flight on a busy instance: fal answers a job's webhook seconds to
    /// minutes after the submit that put it here, so at 20 jobs a second for 5 minutes that is 6,000.
    /// Full, it holds about 35 MB (4.3 KB a job with audio and a 200-character prompt, measured).
    static let defaultCapacity = 8192

    private let state: Mutex<State>
    let capacity: Int

    private struct State {
        var entries: [String: (loaded: JobStore.Loaded, stamp: UInt64)] = [:]
        /// Job ids in the order they were put, each with the stamp of that put; an id put again or
        /// removed leaves a stale pair here, skipped (and compacted away) later.
        var order = CircularBuffer<(jobID: String, stamp: UInt64)>()
        var nextStamp: UInt64 = 0
    }

    init(capacity: Int = JobCache.defaultCapacity) {
        self.capacity = max(1, capacity)
        state = Mutex(State())
    }

    var count: Int { state.withLock { $0.entries.count } }

    func get(_ jobID: String) -> JobStore.Loaded? {
        state.withLock { $0.entries[jobID]?.loaded }
    }

    /// Keeps `loaded` unless a newer version of the job is already here.
    func put(_ loaded: JobStore.Loaded) {
        let capacity = self.capacity
        state.withLock { state in
            let jobID = loaded.job.id
            if let current = state.entries[jobID], current.loaded.job.version > loaded.job.version { return }
            let stamp = state.nextStamp
            state.nextStamp &+= 1
            state.entries[jobID] = (loaded, stamp)
            state.order.append((jobID, stamp))
            while state.entries.count > capacity, let oldest = state.order.popFirst() {
                if state.entries[oldest.jobID]?.stamp == oldest.stamp { state.entries.removeValue(forKey: oldest.jobID) }
            }
            // Stale pairs (jobs put again, or removed) are dropped once they outnumber the live ones.
            if state.order.count > 2 * capacity {
                let entries = state.entries
                state.order.removeAll(where: { entries[$0.jobID]?.stamp != $0.stamp })
            }
        }
    }

    func remove(_ jobID: String) {
        _ = state.withLock { $0.entries.removeValue(forKey: jobID) }
    }
}
