import Fal
import Metrics
import NIOCore
import Synchronization

/// The last version of jobs in flight this instance wrote, read, or saw published, so a change
/// (a webhook, whichever instance fal's call reaches) skips one Redis read and, for a job this
/// instance wrote itself, one document decode.
///
/// Filled two ways: by `JobStore` with what it writes and reads (decoded), and by `EventHub` with
/// each change another instance published (`JobCache.Published`: the doc and view as the events
/// channel carried them, decoded only when a change of that job is applied here).
///
/// Only a hint: every write is still a compare-and-set on `version`, so a stale entry (another
/// instance changed the job) fails its write and the store reads Redis again; and a change that
/// the rules ignore on a cached state is decided again on a fresh read, so a stale state can
/// never make a real event look like a repeat.
///
/// Bounded: past `capacity` jobs, the one put longest ago goes first. Jobs whose tasks have all
/// finished are not kept (`JobStore` removes them, and their published changes carry no doc, so
/// `EventHub` removes them too): a repeat for them is decided on a fresh read anyway.
final class JobCache: Sendable {
    /// Enough for every job in flight on a busy instance: fal answers a job's webhook seconds to
    /// minutes after the submit that put it here, so at 20 jobs a second for 5 minutes that is 6,000.
    /// Full, it holds about 35 MB (4.3 KB a job with audio and a 200-character prompt, measured).
    static let defaultCapacity = 8192

    private let state: Mutex<State>
    let capacity: Int

    /// `clapper_job_cache_total{result}`: changes applied on a cached job (`hit`) or after a read
    /// (`miss`: a job this instance never saw, or one its cache let go).
    static let hits = Counter(label: "clapper_job_cache_total", dimensions: [("result", "hit")])
    static let misses = Counter(label: "clapper_job_cache_total", dimensions: [("result", "miss")])

    /// A change as the events channel carried it (`JobScripts.apply` with `doc`): the stored
    /// document and public view of one version, slices of the message itself (no copy).
    struct Published: Sendable {
        let jobID: String
        let version: Int
        let doc: ArraySlice<UInt8>
        let view: ArraySlice<UInt8>

        /// The job as `JobStore` works on it: the document decoded, and fal's raw outputs as the
        /// view splices them (`videoOutput`, `audioOutput`; null there when not one valid JSON
        /// value, which encodes the same view again). Nil when the doc does not decode.
        func loaded() -> JobStore.Loaded? {
            guard var job = try? JobDocument.decode(doc), job.id == jobID, let members = try? RawJSON.members(of: view) else { return nil }
            job.version = version
            var outputs: [String: [UInt8]] = [:]
            for member in members where !RawJSON.isNull(member.value) {
                switch member.key {
                case "videoOutput": outputs["video"] = Array(member.value)
                case "audioOutput": outputs["audio"] = Array(member.value)
                default: continue
                }
            }
            return JobStore.Loaded(job: job, outputs: outputs)
        }
    }

    /// Boxed (`indirect`): the dictionary's slots stay one word, not a whole `Job`, so growing and
    /// rehashing it moves pointers.
    private indirect enum Entry {
        case loaded(JobStore.Loaded)
        case published(Published)

        var version: Int {
            switch self {
            case .loaded(let loaded): loaded.job.version
            case .published(let published): published.version
            }
        }
    }

    private struct State {
        var entries: [String: (entry: Entry, stamp: UInt64)] = [:]
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

    /// The job's cached version; one seen only as published is decoded here (outside the lock),
    /// and dropped if it does not decode.
    func get(_ jobID: String) -> JobStore.Loaded? {
        switch state.withLock({ $0.entries[jobID]?.entry }) {
        case .loaded(let loaded): return loaded
        case .published(let published):
            if let loaded = published.loaded() { return loaded }
            remove(jobID)
            return nil
        case nil: return nil
        }
    }

    /// Keeps `loaded` unless a newer version of the job is already here.
    func put(_ loaded: JobStore.Loaded) {
        put(.loaded(loaded), jobID: loaded.job.id)
    }

    /// A published change larger than this (fal's outputs spliced into the view can be large) is not
    /// kept: the job's next change reads it instead. A typical one is 2-5 KB.
    static let maxPublishedBytes = 64 * 1024

    /// Keeps a published change unless this version or a newer one is already here; one too large to
    /// keep lets the job go instead (what is here may be older).
    func put(_ published: Published) {
        guard published.doc.count + published.view.count <= Self.maxPublishedBytes else {
            remove(published.jobID, upTo: published.version)
            return
        }
        put(.published(published), jobID: published.jobID, replacingSameVersion: false)
    }

    private func put(_ entry: Entry, jobID: String, replacingSameVersion: Bool = true) {
        let capacity = self.capacity
        state.withLock { state in
            if let current = state.entries[jobID]?.entry.version,
               current > entry.version || (current == entry.version && !replacingSameVersion) { return }
            let stamp = state.nextStamp
            state.nextStamp &+= 1
            state.entries[jobID] = (entry, stamp)
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

    /// Lets every job go: Redis may have lost writes this cache saw (a restart, a failover), and a
    /// job that reaches the same version again with other content must not be taken for it.
    func removeAll() {
        state.withLock { state in
            state.entries.removeAll()
            state.order.removeAll()
        }
    }

    /// Drops the job unless what is here is newer than `version` (a change published without its
    /// doc: the job settled, or its writer did not say).
    func remove(_ jobID: String, upTo version: Int) {
        state.withLock { state in
            if let current = state.entries[jobID]?.entry.version, current <= version { state.entries.removeValue(forKey: jobID) }
        }
    }
}
