/// The queue's rules as a value: FIFO waiting line (`low` priority behind every `normal` one,
/// as `X-Fal-Queue-Priority` asks), a minimum queue delay, an optional concurrency limit. Methods return the ids to start; the engine does the I/O and timers.
struct FalSimQueueStateMachine: Sendable {
    enum Phase: Sendable, Equatable {
        /// Waiting; `ready` once the queue delay has elapsed.
        case waiting(ready: Bool)
        case running
        case completed
    }

    enum CancelResult: Sendable, Equatable {
        /// A waiting request was removed: it is now completed (canceled).
        case canceledWhileQueued
        /// A running request was asked to stop; it may still finish.
        case requestedWhileRunning
        case alreadyCompleted
        case notFound
    }

    let concurrency: Int?
    private var waiting: [String] = []
    private var low: Set<String> = []
    private var ready: Set<String> = []
    private var running: Set<String> = []
    private var phases: [String: Phase] = [:]

    init(concurrency: Int?) {
        self.concurrency = concurrency.map { max(1, $0) }
    }

    func phase(of id: String) -> Phase? { phases[id] }

    /// Position in the waiting line (0 = next), nil unless waiting.
    func queuePosition(of id: String) -> Int? {
        guard case .waiting = phases[id] else { return nil }
        return waiting.firstIndex(of: id)
    }

    var runningCount: Int { running.count }

    mutating func submit(_ id: String, lowPriority: Bool = false) {
        guard phases[id] == nil else { return }
        if lowPriority {
            low.insert(id)
            waiting.append(id)
        } else {
            // Ahead of every low-priority request still waiting.
            waiting.insert(id, at: waiting.firstIndex(where: low.contains) ?? waiting.endIndex)
        }
        phases[id] = .waiting(ready: false)
    }

    /// The queue delay of `id` elapsed; returns the ids to start now.
    mutating func queueDelayElapsed(_ id: String) -> [String] {
        guard case .waiting = phases[id] else { return [] }
        ready.insert(id)
        phases[id] = .waiting(ready: true)
        return startEligible()
    }

    /// `id` finished running; returns the ids to start now.
    mutating func finish(_ id: String) -> [String] {
        guard phases[id] == .running else { return [] }
        running.remove(id)
        phases[id] = .completed
        return startEligible()
    }

    mutating func cancel(_ id: String) -> CancelResult {
        switch phases[id] {
        case nil: return .notFound
        case .completed: return .alreadyCompleted
        case .running: return .requestedWhileRunning
        case .waiting:
            waiting.removeAll { $0 == id }
            ready.remove(id)
            low.remove(id)
            phases[id] = .completed
            return .canceledWhileQueued
        }
    }

    private mutating func startEligible() -> [String] {
        var started: [String] = []
        var index = 0
        while index < waiting.count {
            if let concurrency, running.count >= concurrency { break }
            let id = waiting[index]
            if ready.contains(id) {
                waiting.remove(at: index)
                ready.remove(id)
                low.remove(id)
                running.insert(id)
                phases[id] = .running
                started.append(id)
            } else {
                index += 1
            }
        }
        return started
    }
}
