@testable import Redis
import Testing

@Suite("Redis Cluster: slots, topology, URLs, routing units (no I/O)")
struct RedisClusterUnitTests {
    @Test func slotsMatchRedisClusterSpec() {
        // CLUSTER KEYSLOT answers on Redis 7 and the spec's CRC16 check value.
        #expect(RedisClusterSlot.of("foo") == 12182)
        #expect(RedisClusterSlot.of("bar") == 5061)
        #expect(RedisClusterSlot.of("123456789") == 0x31C3 & 0x3FFF)
        #expect(RedisClusterSlot.of("{user1000}.following") == RedisClusterSlot.of("user1000"))
        // An empty tag hashes the whole key; only the first `{…}` counts.
        #expect(RedisClusterSlot.of("foo{}{bar}") != RedisClusterSlot.of("bar"))
        #expect(RedisClusterSlot.of("foo{{bar}}zap") == RedisClusterSlot.of("{bar"))
        #expect(RedisClusterSlot.of("foo{bar}{zap}") == RedisClusterSlot.of("bar"))
    }

    @Test func commandsAreRoutedByTheirFirstKey() {
        #expect(RedisClusterSlot.of(RedisCommand("HGET", "{a}x", "f")) == RedisClusterSlot.of("a"))
        #expect(RedisClusterSlot.of(RedisCommand("EVALSHA", "sha", 2, "{b}1", "{b}2", "arg")) == RedisClusterSlot.of("b"))
        #expect(RedisClusterSlot.of(RedisCommand("EVALSHA", "sha", 0, "arg")) == nil)
        #expect(RedisClusterSlot.of(RedisCommand("EVALSHA", "sha", "not-a-number", "x")) == nil)
        #expect(RedisClusterSlot.of(RedisCommand("WAIT", 1, 100)) == nil)
        #expect(RedisClusterSlot.of(RedisCommand("SCRIPT", "LOAD", "return 1")) == nil)
        #expect(RedisClusterSlot.of(RedisCommand("SPUBLISH", "{c}ch", "m")) == RedisClusterSlot.of("c"))
    }

    @Test func keylessCommandsTravelWithTheirNeighbour() {
        let commands = [
            RedisCommand("SCRIPT", "LOAD", "x"), RedisCommand("EVALSHA", "s", 1, "k1", "a"), RedisCommand("WAIT", 1, 10),
            RedisCommand("GET", "k2"), RedisCommand("PING"),
        ]
        let units = RedisClusterClient.units(of: commands)
        #expect(units.map(\.indices) == [[0, 1, 2], [3, 4]])
        #expect(units.map(\.keyed) == [1, 3])
        #expect(RedisClusterClient.units(of: [RedisCommand("PING"), RedisCommand("TIME")]).map(\.indices) == [[0, 1]])
    }

    @Test func clusterSlotsReplyIsRead() throws {
        func node(_ host: String, _ port: Int64) -> RedisValue { .array([.bulk(Array(host.utf8)), .integer(port), .bulk(Array("id".utf8))]) }
        let reply = RedisValue.array([
            .array([.integer(0), .integer(5460), node("10.0.0.1", 7001), node("10.0.0.4", 7004)]),
            .array([.integer(5461), .integer(10922), node("", 7002)]),
            .array([.integer(10923), .integer(16383), node("10.0.0.1", 7001)]),
        ])
        let topology = try #require(RedisClusterTopology(clusterSlots: reply, askedHost: "10.0.0.9"))
        #expect(topology.masters == [RedisAddress(host: "10.0.0.1", port: 7001), RedisAddress(host: "10.0.0.9", port: 7002)])
        #expect(topology.master(ofSlot: 0)?.port == 7001)
        #expect(topology.master(ofSlot: 5461)?.host == "10.0.0.9")
        #expect(topology.master(ofSlot: 16383)?.port == 7001)
        #expect(topology.master(ofSlot: 16384) == nil)
        #expect(topology.master(ofSlot: -1) == nil)
        #expect(topology.unassignedSlots == 0)
    }

    @Test(arguments: [
        RedisValue.array([.array([.integer(0), .integer(16384), .array([.bulk(Array("h".utf8)), .integer(1)])])]),
        .array([.array([.integer(-1), .integer(3), .array([.bulk(Array("h".utf8)), .integer(1)])])]),
        .array([.array([.integer(5), .integer(3), .array([.bulk(Array("h".utf8)), .integer(1)])])]),
        .array([.array([.integer(0), .integer(3), .array([.bulk(Array("h".utf8)), .integer(70000)])])]),
        .array([.array([.integer(0), .integer(3)])]),
        .integer(Int64.max),
        .array([.array([.integer(Int64.min), .integer(Int64.max), .array([.bulk(Array("h".utf8)), .integer(1)])])]),
        // More distinct masters than slots (and than a UInt16 counts): refused, not trapped on.
        .array((0..<70_000).map { .array([.integer(0), .integer(0), .array([.bulk(Array("h\($0)".utf8)), .integer(1)])]) }),
    ])
    func hostileClusterSlotsRepliesAreRefusedNotTrappedOn(reply: RedisValue) {
        #expect(RedisClusterTopology(clusterSlots: reply, askedHost: "h") == nil)
    }

    @Test func clusterURLsNameTheirSeeds() throws {
        let url = try RedisURL("redis+cluster://alice:p%40ss@10.0.0.1:7001,10.0.0.2:7002,node3")
        #expect(url.isCluster)
        #expect(url.clusterSeeds == [RedisAddress(host: "10.0.0.1", port: 7001), RedisAddress(host: "10.0.0.2", port: 7002), RedisAddress(host: "node3", port: 6379)])
        #expect(url.username == "alice")
        #expect(url.password == "p@ss")
        #expect(url.node(RedisAddress(host: "10.0.0.5", port: 7005)) == RedisURL(host: "10.0.0.5", port: 7005, username: "alice", password: "p@ss"))
        #expect(!url.description.contains("p@ss"))
        #expect(try !RedisURL("redis://h:1").isCluster)
        for bad in ["redis+cluster://", "redis+cluster://a:1,,b:2", "redis+cluster://a:1/2", "redis+cluster://a:99999"] {
            #expect(throws: RedisError.self) { try RedisURL(bad) }
        }
    }
}
