import Foundation
import Testing
import TestSupport

@Suite("RedisCluster fixture (a real redis-server cluster)")
struct RedisClusterFixtureTests {
    @Test(.timeLimit(.minutes(1)))
    func startsSpreadsKeysAndFailsOver() async throws {
        try await withRedisCluster { cluster in
            #expect(cluster.nodes.count == 6)
            #expect(cluster.seedURLString.hasPrefix("redis+cluster://127.0.0.1:"))
            #expect(cluster.seedURLString.split(separator: ",").count == 6)
            let masters = try await cluster.masters()
            #expect(masters.count == 3)
            for port in cluster.ports {
                let info = try await cluster.command(["CLUSTER", "INFO"], port: port)
                #expect(info.contains("cluster_state:ok"))
                #expect(info.contains("cluster_slots_ok:16384"))
            }

            // Slots 5475, 9472, 13601, 1478, 5607 and 9604: all three masters' ranges.
            let keys = ["a", "b", "c", "d", "e", "f"].map { "fixture:\($0)" }
            for key in keys {
                let reply = try await cluster.command(["SET", key, "v-\(key)"], followRedirects: true)
                #expect(reply.trimmingCharacters(in: .whitespacesAndNewlines) == "OK")
            }
            let counts = try await cluster.keyCounts()
            #expect(counts.values.reduce(0, +) == keys.count)
            #expect(counts.values.filter { $0 > 0 }.count > 1, "keys by master: \(counts)")

            let killed = try await cluster.killMaster(owningSlot: 0)
            #expect(masters.contains(killed))
            try await cluster.waitForFailover(ofSlot: 0, formerMaster: killed)
            let after = try await cluster.masters()
            #expect(!after.contains(killed))
            #expect(after.count == 3)
            // The keys of the killed master's shard were replicated before it died.
            for key in keys {
                let value = try await cluster.command(["GET", key], followRedirects: true)
                #expect(value.trimmingCharacters(in: .whitespacesAndNewlines) == "v-\(key)")
            }
        }
    }
}
