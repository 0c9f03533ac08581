import Logging
import NIOCore
import NIOPosix
@testable import Redis
import Testing
import TestSupport

/// Which connection a caller starts from (no I/O: the slots are only looked at, never opened).
@Suite("Redis connections: a caller on an event loop uses that loop's connections")
struct RedisNodeClientAffinityTests {
    private static func client(poolSize: Int, group: any EventLoopGroup) throws -> RedisNodeClient {
        let configuration = RedisConfiguration(url: try RedisURL("redis://127.0.0.1:1"), poolSize: poolSize)
        return RedisNodeClient(configuration: configuration, counters: RedisPoolCounters(), logger: Logger(label: "test"), eventLoopGroup: group)
    }

    private static func withGroup(threads: Int, _ body: (MultiThreadedEventLoopGroup) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        do {
            try await body(group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    @Test func connectionsAreSpreadOverTheLoopsAndACallerOnALoopStaysOnIt() async throws {
        try await Self.withGroup(threads: 2) { group in
            let node = try Self.client(poolSize: 4, group: group)
            let loops = Array(group.makeIterator())
            for loop in loops {
                // Two of the four slots live on each loop.
                #expect((0..<4).filter { node.eventLoop(ofSlot: $0) === loop }.count == 2)
                // From the loop itself: only its own slots, both of them in turn.
                let picked = try await loop.submit { (0..<8).map { _ in node.firstSlot() } }.get()
                #expect(picked.allSatisfy { node.eventLoop(ofSlot: $0) === loop })
                #expect(Set(picked).count == 2)
            }
            // From outside every loop (Swift's own pool): all four in turn.
            #expect(Set((0..<8).map { _ in node.firstSlot() }) == Set(0..<4))
        }
    }

    @Test func aLoopWithoutAConnectionFallsBackToAll() async throws {
        try await Self.withGroup(threads: 3) { group in
            let node = try Self.client(poolSize: 2, group: group)
            let loops = Array(group.makeIterator())
            guard let bare = loops.first(where: { loop in !(0..<2).contains { node.eventLoop(ofSlot: $0) === loop } }) else {
                Issue.record("every loop got a slot out of two")
                return
            }
            let picked = try await bare.submit { (0..<6).map { _ in node.firstSlot() } }.get()
            #expect(Set(picked) == [0, 1])
        }
    }
}

/// A connection Redis drops takes its older siblings out of use (`RedisNodeClient.retire`): with
/// connections on several loops, a sibling's own close may not be read yet when the next caller picks.
@Suite("Redis connections: one dropped by Redis retires its older siblings")
struct RedisConnectionRetirementTests {
    @Test(.timeLimit(.minutes(1)))
    func aConnectionRedisDropsTakesItsOlderSiblingsOutOfUse() async throws {
        try await withRedisServer { server in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            let pool = RedisClient(configuration: RedisConfiguration(url: server.url, poolSize: 2), eventLoopGroup: group)
            let admin = RedisClient(configuration: RedisConfiguration(url: server.url, poolSize: 1))
            do {
                // Callers off the loops take the two connections in turn: both open, one id each.
                var ids: Set<Int64> = []
                for _ in 0..<20 where ids.count < 2 {
                    if let id = try await pool.send("CLIENT", "ID").integer { ids.insert(id) }
                }
                #expect(ids.count == 2)
                let sorted = ids.sorted()
                guard sorted.count == 2 else { throw RedisError(.protocolError, "the pool opened \(sorted.count) connections") }
                let (dropped, sibling) = (sorted[0], sorted[1])
                // Redis drops one of them (as a restart would drop all; the sibling stays healthy here).
                _ = try await admin.send("CLIENT", "KILL", "ID", "\(dropped)")
                // Once a caller is served by a fresh connection, the loss has been handled: from then
                // on the sibling, handed out before the loss, must never serve a caller again.
                var fresh = false
                for _ in 0..<200 where !fresh {
                    if let id = try? await pool.send("CLIENT", "ID").integer, !ids.contains(id) { fresh = true }
                }
                #expect(fresh)
                var served: Set<Int64> = []
                for _ in 0..<20 {
                    if let id = try await pool.send("CLIENT", "ID").integer { served.insert(id) }
                }
                #expect(!served.contains(sibling))
                #expect(!served.contains(dropped))
                // Retired, the sibling closes (it had nothing in flight).
                var open = true
                for _ in 0..<250 where open {
                    let list = try await admin.send("CLIENT", "LIST").string ?? ""
                    open = list.contains("id=\(sibling) ")
                    if open { try await Task.sleep(for: .milliseconds(20)) }
                }
                #expect(!open)
            } catch {
                await pool.shutdown()
                await admin.shutdown()
                try? await group.shutdownGracefully()
                throw error
            }
            await pool.shutdown()
            await admin.shutdown()
            try await group.shutdownGracefully()
        }
    }
}
