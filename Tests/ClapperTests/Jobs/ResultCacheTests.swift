@testable import Clapper
import FalSim
import Foundation
import Testing
import TestSupport

/// Repeated prompts: an identical task (model and input, seed included) reuses a completed one's
/// result instead of paying fal again.
@Suite("Result cache, end to end")
struct ResultCacheTests {
    let alice = TestUsers.token("cache-\(UUID().uuidString.prefix(6))")

    static func body(_ prompt: String, seed: Int?, cache: Bool? = nil) -> [UInt8] {
        var text = #"{"prompt":"\#(prompt)","durationSeconds":2"#
        if let seed { text += #","video":{"seed":\#(seed)}"# }
        if let cache { text += #","cache":\#(cache)"# }
        return Array((text + "}").utf8)
    }

    func run(_ stack: TestStack, _ body: [UInt8]) async throws -> [String: Any] {
        let created = try await stack.gateway.send(.POST, "/v1/jobs", token: alice, body: body)
        #expect(created.status == 202, "\(created.text)")
        let id = try #require(created.json["jobId"] as? String)
        return try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: alice, until: isFinished)
    }

    /// The cache is fed right after the completing write, which streams may show first: wait
    /// for the entries before asking again.
    func waitForCacheEntries(_ stack: TestStack, _ count: Int) async throws {
        try await eventually("\(count) result cache entries") {
            (try await stack.jobs.repository.redis.send("KEYS", "clapper:cache:*").array?.count ?? 0) >= count
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aSecondIdenticalSeededJobMakesNoSubmit() async throws {
        try await withGateway(GatewayOptions { $0.resultCache = true }) { stack in
            let prompt = "cached \(UUID())"
            let first = try await run(stack, Self.body(prompt, seed: 7))
            #expect(first["videoCached"] as? Bool == false)
            try await waitForCacheEntries(stack, 1)
            let second = try await run(stack, Self.body(prompt, seed: 7))
            #expect(second["status"] as? String == "completed")
            #expect(second["videoCached"] as? Bool == true)
            #expect(second["videoUrl"] as? String == first["videoUrl"] as? String)
            #expect(second["videoRequestId"] is NSNull)
            #expect(second["videoOutput"] is [String: Any])
            #expect(await stack.sim.requests().filter { $0.input.contains(prompt) }.count == 1)

            // Another seed, or no seed at all, goes to fal.
            _ = try await run(stack, Self.body(prompt, seed: 8))
            _ = try await run(stack, Self.body(prompt, seed: nil))
            _ = try await run(stack, Self.body(prompt, seed: nil))
            #expect(await stack.sim.requests().filter { $0.input.contains(prompt) }.count == 4)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func offByDefaultAndAJobCanAskForIt() async throws {
        try await withGateway { stack in
            let prompt = "opt-in \(UUID())"
            _ = try await run(stack, Self.body(prompt, seed: 3))
            let again = try await run(stack, Self.body(prompt, seed: 3))
            #expect(again["videoCached"] as? Bool == false)
            #expect(try await stack.jobs.repository.redis.send("KEYS", "clapper:cache:*").array?.count == 0)
            // Only jobs that asked feed the cache: the first ask still goes to fal, the next reuses it.
            _ = try await run(stack, Self.body(prompt, seed: 3, cache: true))
            try await waitForCacheEntries(stack, 1)
            let reused = try await run(stack, Self.body(prompt, seed: 3, cache: true))
            #expect(reused["videoCached"] as? Bool == true)
            #expect(await stack.sim.requests().filter { $0.input.contains(prompt) }.count == 3)
        }
    }
}
