/// The rules of the connection pool, with no I/O: who gets a connection, who must open one,
/// who waits. The client performs what each call returns.
/// What a lease or a waiter receives: a ready connection, or the right to open a new one.
enum PoolGrant<Connection> {
    case connection(Connection)
    case create
}

extension PoolGrant: Sendable where Connection: Sendable {}

struct PoolStateMachine<Connection, Waiter> {
    typealias Grant = PoolGrant<Connection>

    enum LeaseAction {
        case grant(Grant)
        case wait
        case shutdown
    }

    /// After a connection comes back or its slot frees: hand a grant to a waiter, or close it.
    enum ReturnAction {
        case none
        case resume(Waiter, Grant)
        case close(Connection)
    }

    let maximum: Int
    private var idle: [Connection] = []
    /// Connections idle, leased or being opened.
    private(set) var total = 0
    private var waiters: [(id: Int, waiter: Waiter)] = []
    private(set) var isShutdown = false

    init(maximum: Int) {
        precondition(maximum > 0)
        self.maximum = maximum
    }

    var inUse: Int { total - idle.count }
    var waiting: Int { waiters.count }

    /// A caller wants a connection. `waiter` is kept when the answer is `.wait`.
    mutating func lease(id: Int, waiter: Waiter) -> LeaseAction {
        if isShutdown { return .shutdown }
        if let connection = idle.popLast() { return .grant(.connection(connection)) }
        if total < maximum {
            total += 1
            return .grant(.create)
        }
        waiters.append((id, waiter))
        return .wait
    }

    /// A healthy connection comes back.
    mutating func release(_ connection: Connection) -> ReturnAction {
        if isShutdown {
            total -= 1
            return .close(connection)
        }
        if !waiters.isEmpty {
            let next = waiters.removeFirst()
            return .resume(next.waiter, .connection(connection))
        }
        idle.append(connection)
        return .none
    }

    /// A leased connection broke, or opening one failed: its slot frees.
    mutating func discard() -> ReturnAction {
        total -= 1
        if !isShutdown, !waiters.isEmpty {
            total += 1
            let next = waiters.removeFirst()
            return .resume(next.waiter, .create)
        }
        return .none
    }

    /// A waiter gave up (deadline or cancellation). Returns it if it was still waiting.
    mutating func removeWaiter(id: Int) -> Waiter? {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return nil }
        return waiters.remove(at: index).waiter
    }

    /// A connection broke: the idle ones were opened to the same server and most likely broke
    /// with it (a restart, a failover). They are taken out to be closed, so each does not cost a
    /// caller one failed command; new ones are opened on demand.
    mutating func dropIdle() -> [Connection] {
        let dropped = idle
        total -= idle.count
        idle = []
        return dropped
    }

    /// Stops the pool: idle connections to close, waiters to fail.
    mutating func shutdown() -> (idle: [Connection], waiters: [Waiter]) {
        isShutdown = true
        let closing = idle
        total -= idle.count
        idle = []
        let failing = waiters.map(\.waiter)
        waiters = []
        return (closing, failing)
    }
}
