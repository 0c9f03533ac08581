import NIOCore

/// The rules of one connection slot of `RedisClient`, with no I/O: use the open connection,
/// open one (at once, or after a backoff when opening has been failing), or wait for the one
/// being opened. The client performs what each call returns.
///
/// `Attempt` stands for an opening in progress that callers can wait for (a promise).
struct ConnectionSlotStateMachine<Connection: AnyObject, Attempt> {
    enum State {
        /// No connection. `failures` openings in a row have failed; the next may start at `retryAt`.
        case idle(failures: Int, retryAt: NIODeadline?)
        case connecting(Attempt, failures: Int)
        case ready(Connection)
        case shutdown
    }

    enum UseAction {
        case use(Connection)
        /// Open a connection after `delay` (zero unless openings have been failing) and complete
        /// `Attempt` with it; others meanwhile wait for the same attempt.
        case connect(Attempt, delay: TimeAmount)
        case wait(Attempt)
        case shutdown
    }

    /// The longest pause between two openings while Redis stays unreachable.
    static var maximumBackoff: TimeAmount { .milliseconds(500) }

    private(set) var state = State.idle(failures: 0, retryAt: nil)

    /// A caller wants the connection. `isUsable` says whether an open one still is (the socket
    /// may have closed a moment ago); `makeAttempt` is called only when an opening starts.
    mutating func use(now: NIODeadline, isUsable: (Connection) -> Bool, makeAttempt: () -> Attempt) -> UseAction {
        switch state {
        case .ready(let connection) where isUsable(connection):
            return .use(connection)
        case .ready:
            return startAttempt(failures: 0, retryAt: nil, now: now, makeAttempt: makeAttempt)
        case .idle(let failures, let retryAt):
            return startAttempt(failures: failures, retryAt: retryAt, now: now, makeAttempt: makeAttempt)
        case .connecting(let attempt, _):
            return .wait(attempt)
        case .shutdown:
            return .shutdown
        }
    }

    private mutating func startAttempt(failures: Int, retryAt: NIODeadline?, now: NIODeadline, makeAttempt: () -> Attempt) -> UseAction {
        let attempt = makeAttempt()
        state = .connecting(attempt, failures: failures)
        let delay = retryAt.map { $0 > now ? $0 - now : .zero } ?? .zero
        return .connect(attempt, delay: delay)
    }

    /// The opening succeeded. False when the client shut down meanwhile: close the connection.
    mutating func connected(_ connection: Connection) -> Bool {
        guard case .connecting = state else { return false }
        state = .ready(connection)
        return true
    }

    /// The opening failed: the next waits a backoff that doubles from 25 ms up to `maximumBackoff`.
    /// Returns how many openings in a row have failed (0 when the slot had moved on).
    @discardableResult
    mutating func connectFailed(now: NIODeadline) -> Int {
        guard case .connecting(_, let failures) = state else { return 0 }
        let count = failures + 1
        state = .idle(failures: count, retryAt: now + Self.backoff(afterFailures: count))
        return count
    }

    /// The connection closed (Redis went away, a command timed out): the next caller opens anew.
    /// Ignored if the slot has moved on to another connection.
    mutating func closed(_ connection: Connection) {
        guard case .ready(let current) = state, current === connection else { return }
        state = .idle(failures: 0, retryAt: nil)
    }

    /// Stops the slot: the connection to close and the attempt to fail, if any.
    mutating func shutdown() -> (connection: Connection?, attempt: Attempt?) {
        defer { state = .shutdown }
        switch state {
        case .ready(let connection): return (connection, nil)
        case .connecting(let attempt, _): return (nil, attempt)
        case .idle, .shutdown: return (nil, nil)
        }
    }

    static func backoff(afterFailures failures: Int) -> TimeAmount {
        let exponent = min(max(failures - 1, 0), 10)
        return min(.milliseconds(25 << exponent), maximumBackoff)
    }
}
