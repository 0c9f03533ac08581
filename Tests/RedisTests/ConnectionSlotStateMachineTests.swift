import NIOCore
@testable import Redis
import Testing

@Suite("Connection slot state machine (no I/O)")
struct ConnectionSlotStateMachineTests {
    final class Connection {}
    typealias Machine = ConnectionSlotStateMachine<Connection, String>

    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func theFirstCallerOpensAndOthersWaitForTheSameAttempt() {
        var slot = Machine()
        guard case .connect("a1", let delay) = slot.use(now: t0, isUsable: { _ in true }, makeAttempt: { "a1" }) else { Issue.record(); return }
        #expect(delay == .zero)
        guard case .wait("a1") = slot.use(now: t0, isUsable: { _ in true }, makeAttempt: { "a2" }) else { Issue.record(); return }
        let connection = Connection()
        let kept = slot.connected(connection)
        #expect(kept)
        guard case .use(let used) = slot.use(now: t0, isUsable: { _ in true }, makeAttempt: { "a3" }) else { Issue.record(); return }
        #expect(used === connection)
    }

    @Test func aClosedOrDeadConnectionIsReopenedAtOnce() {
        var slot = Machine()
        _ = slot.use(now: t0, isUsable: { _ in true }, makeAttempt: { "a1" })
        let first = Connection()
        _ = slot.connected(first)
        // Closed but not yet reported: the socket says it is gone.
        guard case .connect("a2", .zero) = slot.use(now: t0, isUsable: { _ in false }, makeAttempt: { "a2" }) else { Issue.record(); return }
        let second = Connection()
        _ = slot.connected(second)
        // The old connection's close, reported late, does not drop the new one.
        slot.closed(first)
        guard case .use(let used) = slot.use(now: t0, isUsable: { _ in true }, makeAttempt: { "x" }) else { Issue.record(); return }
        #expect(used === second)
        slot.closed(second)
        guard case .connect("a3", .zero) = slot.use(now: t0, isUsable: { _ in true }, makeAttempt: { "a3" }) else { Issue.record(); return }
    }

    @Test func failedOpeningsBackOffExponentiallyUpToTheCap() {
        var slot = Machine()
        var now = t0
        var delays: [TimeAmount] = []
        for attempt in 0..<8 {
            guard case .connect(_, let delay) = slot.use(now: now, isUsable: { _ in true }, makeAttempt: { "a\(attempt)" }) else { Issue.record(); return }
            delays.append(delay)
            slot.connectFailed(now: now)
            now = now + .milliseconds(1)
        }
        // Each caller came 1 ms after the failure: it waits the rest of the backoff.
        #expect(delays == [.zero, .milliseconds(24), .milliseconds(49), .milliseconds(99), .milliseconds(199), .milliseconds(399), .milliseconds(499), .milliseconds(499)])
        // A success resets the count: after it closes, a failed opening backs off 25 ms again.
        now = now + .seconds(1)
        guard case .connect = slot.use(now: now, isUsable: { _ in true }, makeAttempt: { "ok" }) else { Issue.record(); return }
        let connection = Connection()
        _ = slot.connected(connection)
        slot.closed(Connection())  // not the slot's connection: ignored
        guard case .ready = slot.state else { Issue.record(); return }
        slot.closed(connection)
        guard case .connect(_, .zero) = slot.use(now: now, isUsable: { _ in true }, makeAttempt: { "again" }) else { Issue.record(); return }
        #expect(slot.connectFailed(now: now) == 1)
        guard case .connect(_, let delay) = slot.use(now: now, isUsable: { _ in true }, makeAttempt: { "after" }) else { Issue.record(); return }
        #expect(delay == .milliseconds(25))
    }

    @Test func shutdownHandsBackWhatToCloseAndFailsLaterCallers() {
        var slot = Machine()
        _ = slot.use(now: t0, isUsable: { _ in true }, makeAttempt: { "a1" })
        let (connection, attempt) = slot.shutdown()
        #expect(connection == nil)
        #expect(attempt == "a1")
        // The opening completes after shutdown: it must be closed, not kept.
        let kept = slot.connected(Connection())
        #expect(!kept)
        guard case .shutdown = slot.use(now: t0, isUsable: { _ in true }, makeAttempt: { "a2" }) else { Issue.record(); return }
    }
}
