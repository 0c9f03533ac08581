import Logging
import NIOCore
import NIOPosix
@testable import Redis
import Testing

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
