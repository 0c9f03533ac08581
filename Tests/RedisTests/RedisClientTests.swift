import Foundation
import Redis
import Testing
import TestSupport

@Suite("Redis client against a real redis-server")
struct RedisClientTests {
    @Test func everyByteValueAndAOneMebibyteValueRoundTrip() async throws {
        try await withRedis { redis, _ in
            let key = "bytes:\(UUID().uuidString)"
            let allBytes = (0...255).map { UInt8($0) }
            try await redis.send("SET", key, allBytes)
            #expect(try await redis.send("GET", key).bytes == allBytes)

            let big = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            try await redis.send("SET", key + ":big", big)
            #expect(try await redis.send("GET", key + ":big").bytes == big)
            // An argument with NUL bytes is a key too (binary-safe argv, no format strings).
            let nulKey: [UInt8] = Array((key + "\0%s\0").utf8)
            try await redis.send("SET", nulKey, "v")
            #expect(try await redis.send("GET", nulKey).string == "v")
        }
    }

    @Test func repliesDecodeToEveryKind() async throws {
        try await withRedis { redis, _ in
            let key = "kinds:\(UUID().uuidString)"
            #expect(try await redis.send("SET", key, "1") == .status("OK"))
            #expect(try await redis.send("INCR", key) == .integer(2))
            #expect(try await redis.send("GET", key + ":missing") == .null)
            try await redis.send("RPUSH", key + ":list", "a", "b")
            #expect(try await redis.send("LRANGE", key + ":list", 0, -1) == .array([.bulk(Array("a".utf8)), .bulk(Array("b".utf8))]))
            let error = await #expect(throws: RedisError.self) { try await redis.send("INCR", key + ":list") }
            #expect(error?.code == .server)
            #expect(error?.message.hasPrefix("WRONGTYPE") == true)
        }
    }

    @Test func pipelineSendsManyCommandsAndKeepsErrorsInPlace() async throws {
        try await withRedis { redis, _ in
            let key = "pipe:\(UUID().uuidString)"
            let replies = try await redis.pipeline([
                RedisCommand("SET", key, "10"),
                RedisCommand("INCRBY", key, 5),
                RedisCommand("LPUSH", key, "x"),
                RedisCommand("GET", key),
            ])
            #expect(replies.count == 4)
            #expect(replies[0] == .status("OK"))
            #expect(replies[1] == .integer(15))
            if case .error(let message) = replies[2] { #expect(message.hasPrefix("WRONGTYPE")) } else { Issue.record("expected an error reply") }
            #expect(replies[3].string == "15")
            // An empty batch answers at once (no reply would ever complete it).
            #expect(try await redis.pipeline([]) == [])
            #expect(try await redis.send("PING") == .status("PONG"))
        }
    }

    @Test func scriptsReloadAfterScriptFlush() async throws {
        try await withRedis { redis, _ in
            let key = "script:\(UUID().uuidString)"
            let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            #expect(try await redis.eval(script, keys: [key], arguments: [2]) == .integer(2))
            #expect(try await redis.send("SCRIPT", "EXISTS", script.sha1) == .array([.integer(1)]))
            try await redis.send("SCRIPT", "FLUSH")
            #expect(try await redis.send("SCRIPT", "EXISTS", script.sha1) == .array([.integer(0)]))
            #expect(try await redis.eval(script, keys: [key], arguments: [3]) == .integer(5))
            #expect(try await redis.send("SCRIPT", "EXISTS", script.sha1) == .array([.integer(1)]))
        }
    }

    /// A script Redis cannot compile fails with Redis's reason, not a bare NOSCRIPT (two script
    /// parts joined without a newline once read `endlocal` and said only NOSCRIPT).
    @Test func aScriptThatDoesNotCompileSaysWhy() async throws {
        try await withRedis { redis, _ in
            let broken = RedisScript("local a = 1" + "local b = = 2")
            let error = await #expect(throws: RedisError.self) { try await redis.eval(broken, keys: [], arguments: []) }
            #expect(error?.message.contains("SCRIPT LOAD") == true, "\(String(describing: error))")
            #expect(error?.message.contains("NOSCRIPT") == false)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func manyCallersShareOneConnectionAndEachGetsItsOwnReply() async throws {
        try await withRedis(poolSize: 1) { redis, _ in
            let key = "shared:\(UUID().uuidString)"
            // 2,000 commands in flight at once on one socket; each reply must reach its caller.
            let replies = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for index in 0..<2_000 {
                    group.addTask {
                        if index.isMultiple(of: 2) {
                            try await redis.send("HSET", key, "f\(index)", "v\(index)")
                            return (index, try await redis.send("HGET", key, "f\(index)").string)
                        }
                        return (index, try await redis.send("ECHO", "e\(index)").string)
                    }
                }
                return try await group.reduce(into: [Int: String?]()) { $0[$1.0] = $1.1 }
            }
            for index in 0..<2_000 {
                #expect(replies[index] == (index.isMultiple(of: 2) ? "v\(index)" : "e\(index)"))
            }
            // All of it went over one connection (this client's), plus none left busy.
            let clients = try await redis.send("CLIENT", "LIST", "TYPE", "normal").string ?? ""
            #expect(clients.split(separator: "\n").count == 1)
            #expect(redis.poolStatus.inUse == 0)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func waitingForAConnectionEndsAtThePoolTimeoutWhenRedisAcceptsButNeverAnswers() async throws {
        let server = try await RedisServer.start()
        defer { server.stop() }
        // SELECT makes opening a connection wait for a reply; a paused server accepts the TCP
        // connection (the kernel does) and never answers.
        let url = try RedisURL("redis://127.0.0.1:\(server.port)/2")
        let redis = RedisClient(configuration: RedisConfiguration(url: url, poolSize: 1, poolTimeout: .milliseconds(200), commandTimeout: .seconds(5)))
        kill(server.pid, SIGSTOP)
        let start = ContinuousClock.now
        let error = await #expect(throws: RedisError.self) { try await redis.send("PING") }
        let waited = ContinuousClock.now - start
        kill(server.pid, SIGCONT)
        #expect(error?.code == .poolTimeout)
        #expect(waited >= .milliseconds(150))
        #expect(waited < .seconds(3))
        // The opening that was under way completes once Redis answers, and serves a later caller
        // (each waits at most the 200 ms pool timeout: a loaded machine may need a few).
        var pong: RedisValue?
        for _ in 0..<50 where pong == nil {
            pong = try? await redis.send("PING")
        }
        #expect(pong == .status("PONG"))
        await redis.shutdown()
    }

    @Test(.timeLimit(.minutes(1)))
    func aShutDownClientRefusesNewCommands() async throws {
        try await withRedis(poolSize: 2) { (redis: RedisClient, _: RedisServer) async throws in
            #expect(try await redis.send("PING") == .status("PONG"))
            await redis.shutdown()
            let error = await #expect(throws: RedisError.self) { try await redis.send("PING") }
            #expect(error?.code == .shutdown)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func stoppedRedisFailsWithinTheCommandTimeoutThenTheSamePoolRecovers() async throws {
        try await withRedis(poolSize: 4, commandTimeout: .seconds(1)) { redis, server in
            let key = "recover:\(UUID().uuidString)"
            // Open four connections (all idle afterwards).
            async let a = redis.send("PING"), b = redis.send("PING"), c = redis.send("PING"), d = redis.send("PING")
            _ = try await [a, b, c, d]
            try await redis.send("SET", key, "before")
            server.stop()
            let start = ContinuousClock.now
            await #expect(throws: RedisError.self) { try await redis.send("GET", key) }
            // Well under the command timeout's hang; 2.2 s was seen under a loaded full run.
            #expect(ContinuousClock.now - start < .seconds(4))
            // Still down: a new connection is refused quickly, not a hang.
            let refused = await #expect(throws: RedisError.self) { try await redis.send("PING") }
            #expect(refused?.code == .connectionFailed)

            try await server.restart()
            // Several idle connections to the old server: at most one caller sees the break.
            var failures = 0
            for _ in 0..<6 {
                do { _ = try await redis.send("PING") } catch { failures += 1 }
            }
            #expect(failures <= 1)
            #expect(try await redis.send("PING") == .status("PONG"))
            try await redis.send("SET", key, "after")
            #expect(try await redis.send("GET", key).string == "after")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aCommandThatOutlivesTheTimeoutFailsAndTheConnectionIsReplaced() async throws {
        try await withRedis(poolSize: 1, commandTimeout: .milliseconds(300)) { redis, _ in
            let start = ContinuousClock.now
            // BLPOP blocks this client only, so the server can still answer the next connection.
            let error = await #expect(throws: RedisError.self) { try await redis.send("BLPOP", "never:\(UUID().uuidString)", 20) }
            #expect(error?.code == .timeout)
            // Well before BLPOP's own 20 s: the 300 ms timeout cut it. The bound is loose because
            // a loaded machine fires the timer late (1.83 s once under the full suite).
            #expect(ContinuousClock.now - start < .seconds(10))
            let pong = try await redis.send("PING")
            #expect(pong == .status("PONG"))
        }
    }

    @Test func authAndSelectFromTheURL() async throws {
        let server = try await RedisServer.start(extraArguments: ["--requirepass", "s3cr%t"])
        defer { server.stop() }
        let url = try RedisURL("redis://:s3cr%25t@127.0.0.1:\(server.port)/3")
        #expect(url.password == "s3cr%t")
        #expect(url.database == 3)
        #expect(!url.description.contains("s3cr"))
        let redis = RedisClient(configuration: RedisConfiguration(url: url))
        let key = "db3:\(UUID().uuidString)"
        try await redis.send("SET", key, "x")
        let fromDB0 = RedisClient(configuration: RedisConfiguration(url: try RedisURL("redis://:s3cr%25t@127.0.0.1:\(server.port)/0")))
        #expect(try await fromDB0.send("GET", key) == .null)
        #expect(try await redis.send("GET", key).string == "x")
        let wrong = RedisClient(configuration: RedisConfiguration(url: try RedisURL("redis://:nope@127.0.0.1:\(server.port)")))
        let error = await #expect(throws: RedisError.self) { try await wrong.send("PING") }
        #expect(error?.code == .connectionFailed)
        await redis.shutdown()
        await fromDB0.shutdown()
        await wrong.shutdown()
    }

    @Test(arguments: ["http://x", "redis://", "redis://h:99999", "redis://h/abc"])
    func malformedURLsAreRejected(_ text: String) {
        #expect(throws: RedisError.self) { try RedisURL(text) }
    }
}
