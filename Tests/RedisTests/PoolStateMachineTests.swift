@testable import Redis
import Testing

@Suite("Pool state machine (no I/O)")
struct PoolStateMachineTests {
    typealias Machine = PoolStateMachine<String, String>

    @Test func createsUpToTheMaximumThenQueuesWaitersInOrder() {
        var pool = Machine(maximum: 2)
        guard case .grant(.create) = pool.lease(id: 1, waiter: "a") else { Issue.record(); return }
        guard case .grant(.create) = pool.lease(id: 2, waiter: "b") else { Issue.record(); return }
        guard case .wait = pool.lease(id: 3, waiter: "c") else { Issue.record(); return }
        guard case .wait = pool.lease(id: 4, waiter: "d") else { Issue.record(); return }
        #expect(pool.inUse == 2)
        #expect(pool.waiting == 2)
        guard case .resume("c", .connection("conn1")) = pool.release("conn1") else { Issue.record(); return }
        #expect(pool.removeWaiter(id: 4) == "d")
        #expect(pool.removeWaiter(id: 4) == nil)
        guard case .none = pool.release("conn1") else { Issue.record(); return }
        guard case .grant(.connection("conn1")) = pool.lease(id: 5, waiter: "e") else { Issue.record(); return }
    }

    @Test func aBrokenConnectionFreesItsSlotForAWaiter() {
        var pool = Machine(maximum: 1)
        _ = pool.lease(id: 1, waiter: "a")
        _ = pool.lease(id: 2, waiter: "b")
        guard case .resume("b", .create) = pool.discard() else { Issue.record(); return }
        #expect(pool.total == 1)
        guard case .none = pool.discard() else { Issue.record(); return }
        #expect(pool.total == 0)
    }

    @Test func shutdownFailsWaitersAndClosesReturns() {
        var pool = Machine(maximum: 1)
        _ = pool.lease(id: 1, waiter: "a")
        _ = pool.lease(id: 2, waiter: "b")
        let (idle, waiters) = pool.shutdown()
        #expect(idle.isEmpty)
        #expect(waiters == ["b"])
        guard case .close("c1") = pool.release("c1") else { Issue.record(); return }
        guard case .shutdown = pool.lease(id: 3, waiter: "c") else { Issue.record(); return }
    }

    @Test func aBrokenConnectionTakesTheIdleOnesWithIt() {
        var pool = Machine(maximum: 3)
        for id in 1...3 { _ = pool.lease(id: id, waiter: "w\(id)") }
        _ = pool.release("c1")
        _ = pool.release("c2")
        #expect(pool.total == 3)
        #expect(Set(pool.dropIdle()) == ["c1", "c2"])
        #expect(pool.total == 1)
        guard case .none = pool.discard() else { Issue.record(); return }
        #expect(pool.total == 0)
        guard case .grant(.create) = pool.lease(id: 9, waiter: "x") else { Issue.record(); return }
    }
}
