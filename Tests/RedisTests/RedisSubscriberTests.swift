import Foundation
import Logging
import Redis
import ServiceLifecycle
import Testing
import TestSupport

@Suite("Redis pub/sub")
struct RedisSubscriberTests {
    @Test(.timeLimit(.minutes(1)))
    func deliversMessagesAndResubscribesAfterClientKill() async throws {
        try await withRedis { redis, server in
            let channel = "chan:\(UUID().uuidString)"
            let subscriber = RedisSubscriber(configuration: RedisConfiguration(url: server.url), channels: [channel])
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await subscriber.run() }
                var events = subscriber.events.makeAsyncIterator()
                #expect(await events.next() == .subscribed)

                try await redis.send("PUBLISH", channel, [0, 1, 2, 255] as [UInt8])
                #expect(await events.next() == .message(channel: channel, payload: [0, 1, 2, 255]))

                let killed = try await redis.send("CLIENT", "KILL", "TYPE", "pubsub")
                #expect(killed == .integer(1))
                #expect(await events.next() == .resubscribed)

                try await redis.send("PUBLISH", channel, "after")
                #expect(await events.next() == .message(channel: channel, payload: Array("after".utf8)))

                subscriber.stop()
                #expect(await events.next() == nil)
                try await group.waitForAll()
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func gracefulShutdownWakesABlockedSubscriber() async throws {
        try await withRedisServer { server in
            let subscriber = RedisSubscriber(configuration: RedisConfiguration(url: server.url), channels: ["idle:\(UUID().uuidString)"])
            let group = ServiceGroup(configuration: .init(services: [subscriber], logger: .init(label: "test")))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                var events = subscriber.events.makeAsyncIterator()
                #expect(await events.next() == .subscribed)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
        }
    }
}
