import Foundation
import Logging
import Redis
import ServiceLifecycle
import Synchronization
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

    /// `onEvent`: every event to the handler, in order, on the subscription's thread; while the
    /// handler blocks (a catch-up), later messages wait; `events` gets nothing.
    @Test(.timeLimit(.minutes(1)))
    func aHandlerGetsEveryEventInOrderAndHoldsLaterMessagesWhileItBlocks() async throws {
        try await withRedis { redis, server in
            let channel = "chan:\(UUID().uuidString)"
            let subscriber = RedisSubscriber(configuration: RedisConfiguration(url: server.url), channels: [channel])
            // What the handler saw, each with whether the blocked handler had been let go by then.
            let seen = Mutex<[(event: RedisSubscriber.Event, released: Bool)]>([])
            let released = Atomic<Bool>(false)
            let gate = DispatchSemaphore(value: 0)
            subscriber.onEvent { event in
                seen.withLock { $0.append((event, released.load(ordering: .sequentiallyConsistent))) }
                if event == .resubscribed { gate.wait() }
            }
            func count() -> Int { seen.withLock { $0.count } }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await subscriber.run() }
                try await eventually { count() == 1 }
                try await redis.send("PUBLISH", channel, "before")
                try await eventually { count() == 2 }
                #expect(try await redis.send("CLIENT", "KILL", "TYPE", "pubsub") == .integer(1))
                try await eventually { count() == 3 }
                // The handler is blocked in `.resubscribed`: these wait in the socket.
                for text in ["after-1", "after-2"] { try await redis.send("PUBLISH", channel, text) }
                released.store(true, ordering: .sequentiallyConsistent)
                gate.signal()
                try await eventually { count() == 5 }
                subscriber.stop()
                try await group.waitForAll()
            }
            let events = seen.withLock { $0 }
            #expect(events.map(\.event) == [
                .subscribed, .message(channel: channel, payload: Array("before".utf8)), .resubscribed,
                .message(channel: channel, payload: Array("after-1".utf8)), .message(channel: channel, payload: Array("after-2".utf8)),
            ])
            #expect(events.suffix(2).allSatisfy { $0.released }, "messages after the gap waited for the handler")
            var stream = subscriber.events.makeAsyncIterator()
            #expect(await stream.next() == nil)
        }
    }

    private func eventually(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw RedisError(.timeout, "condition not met in 10 s") }
            try await Task.sleep(for: .milliseconds(10))
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
