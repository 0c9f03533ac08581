import Synchronization

/// Whether Redis answers, asked at most once at a time however many callers ask: `/readyz`
/// under load must not take a pool connection per call.
///
/// - At most one PING is in flight; every caller that arrives meanwhile waits for its answer.
/// - A PING answered ready that was shared by concurrent callers (evidence of load) is reused
///   by callers arriving within `reuseFor` of its start. A lone caller always sends its own PING,
///   and a failure is never reused, so readiness follows Redis at once when nobody floods it.
/// - Each caller waits at most its deadline: a PING that hangs answers them "no answer", and
///   the next caller after it ends (the command timeout) sends a new one.
final class ReadinessProbe: Sendable {
    /// nil: ready; otherwise why not.
    typealias Ping = @Sendable () async -> String?

    private struct State {
        var waiters: [OneShot<String?>] = []
        var inFlightSince: ContinuousClock.Instant?
        /// When the newest shared, successful PING started.
        var sharedReadyAt: ContinuousClock.Instant?
    }

    private let ping: Ping
    private let reuseFor: Duration
    private let state = Mutex(State())
    /// PINGs sent (tests and the metrics page read it).
    private let sent = Atomic<Int>(0)

    init(reuseFor: Duration = .milliseconds(250), ping: @escaping Ping) {
        self.ping = ping
        self.reuseFor = reuseFor
    }

    var pingsSent: Int { sent.load(ordering: .relaxed) }

    /// nil when Redis answered PING (now, or in a shared answer still fresh), else the reason;
    /// answers within `deadline` whatever Redis does.
    func check(deadline: Duration) async -> String? {
        let now = ContinuousClock.now
        let shot = OneShot<String?>()
        enum Plan { case ready, wait, send }
        let plan = state.withLock { state -> Plan in
            if let at = state.sharedReadyAt, now - at < reuseFor { return .ready }
            state.waiters.append(shot)
            guard state.inFlightSince == nil else { return .wait }
            state.inFlightSince = now
            return .send
        }
        if case .ready = plan { return nil }
        var timer: Task<Void, Never>?
        let answer = await withCheckedContinuation { continuation in
            shot.set(continuation)
            if case .send = plan {
                sent.add(1, ordering: .relaxed)
                Task { self.finish(startedAt: now, answer: await self.ping()) }
            }
            timer = Task {
                try? await Task.sleep(for: deadline)
                shot.resume("redis: no answer within \(deadline)")
            }
        }
        timer?.cancel()
        return answer
    }

    private func finish(startedAt: ContinuousClock.Instant, answer: String?) {
        let waiters = state.withLock { state -> [OneShot<String?>] in
            let waiters = state.waiters
            state.waiters = []
            state.inFlightSince = nil
            if answer == nil, waiters.count > 1 { state.sharedReadyAt = startedAt }
            if answer != nil { state.sharedReadyAt = nil }
            return waiters
        }
        for waiter in waiters { waiter.resume(answer) }
    }
}
