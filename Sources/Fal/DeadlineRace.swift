import Synchronization

/// The first of several outcomes (the answer, the deadline, the caller's cancellation) resumes
/// one continuation; later ones are dropped. An outcome that comes before the continuation is set
/// is kept for it, and cleanup registered after the end runs at once.
final class DeadlineRace: Sendable {
    typealias Outcome = Result<HTTPTransportResponse, HTTPTransportError>

    private struct State {
        var continuation: CheckedContinuation<Outcome, Never>?
        var early: Outcome?
        var finished = false
        var cleanup: [@Sendable () -> Void] = []
    }

    private let state = Mutex(State())

    func set(_ continuation: CheckedContinuation<Outcome, Never>) {
        let early = state.withLock { state -> Outcome? in
            guard let early = state.early else {
                state.continuation = continuation
                return nil
            }
            state.early = nil
            return early
        }
        if let early { continuation.resume(returning: early) }
    }

    func finish(_ outcome: Outcome) {
        let (continuation, cleanup) = state.withLock { state -> (CheckedContinuation<Outcome, Never>?, [@Sendable () -> Void]) in
            guard !state.finished else { return (nil, []) }
            state.finished = true
            let cleanup = state.cleanup
            state.cleanup = []
            guard let continuation = state.continuation else {
                state.early = outcome
                return (nil, cleanup)
            }
            state.continuation = nil
            return (continuation, cleanup)
        }
        continuation?.resume(returning: outcome)
        for action in cleanup { action() }
    }

    /// Runs `action` once an outcome is in (at once if it already is).
    func whenFinished(_ action: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.finished { return true }
            state.cleanup.append(action)
            return false
        }
        if now { action() }
    }
}
