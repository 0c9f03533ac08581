@testable import Clapper
import Foundation
import Redis
import Testing
import TestSupport

/// Clapper on a real Redis Cluster (3 masters, a replica each): two gateways, fal-sim, the
/// reconciler, event streams on the gateway that did not create the jobs, and a master killed
/// while jobs run.
@Suite("Redis Cluster end to end")
struct ClusterEndToEndTests {
    /// Users whose shards lie in each third of the slot range, so every master holds jobs.
    static func users(_ run: String) -> [String] {
        let keys = JobKeys.cluster()
        return [0, 3, 6, 9, 12, 15].map { shard in
            var n = 0
            while keys.shard(ofUser: "\(run)-\(n)") != shard { n += 1 }
            return "\(run)-\(n)"
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func jobsOnTwoInstancesFinishThroughAMastersFailover() async throws {
        try await withRedisCluster { cluster in
            let url = try RedisURL(cluster.seedURLString)
            let users = Self.users("cluster-\(UUID().uuidString.prefix(6))")
            let perUser = 4
            var sim = SimSetup()
            sim.runDelay = .milliseconds(800)
            try await withGateway(GatewayOptions(redis: .given(cluster.nodes[0]), fal: .sim(sim.configuration), gateways: 2, configure: {
                $0.redis.url = url
                $0.redis.writeReplicas = 1
                ReconcileSetup.on(&$0)
            })) { stack in
                let creator = stack.gateways[0], watcher = stack.gateways[1]
                // Every user's stream on the other gateway, open before the first job.
                var readers: [SSEReader] = []
                for user in users {
                    let reader = try await SSEReader(client: stack.http, port: watcher.port, path: "/v1/events", headers: ["Authorization": "Bearer \(TestUsers.token(user))"])
                    #expect(reader.status == 200)
                    readers.append(reader)
                }
                var created: [String: String] = [:]  // job id -> user
                var killed: Int?
                for round in 0..<perUser {
                    if round == perUser / 2 {
                        // Half the jobs are in flight: the master of shard 0 dies.
                        killed = try await cluster.killMaster(owningSlot: 0)
                    }
                    for user in users {
                        let key = "\(user)-\(round)"
                        // During the failover a create may fail; the same Idempotency-Key makes the retry safe.
                        var id: String?
                        var tries = 0
                        while id == nil {
                            tries += 1
                            let reply = try await creator.send(.POST, "/v1/jobs", token: TestUsers.token(user), headers: ["Idempotency-Key": key], body: jobBody("\(key) a cluster job"))
                            id = reply.json["jobId"] as? String
                            if id == nil {
                                #expect(reply.status >= 500, "create refused: \(reply.status) \(reply.text)")
                                #expect(tries < 200)
                                try await Task.sleep(for: .milliseconds(50))
                            }
                        }
                        if let id { created[id] = user }
                    }
                }
                // The dead node comes back, as an orchestrator would restart it: it rejoins as the
                // replica of the master that took its place.
                if let killed, let node = cluster.nodes.first(where: { $0.port == killed }) {
                    try await node.restart()
                }

                // Every job finishes, and the other gateway's streams see each one finish.
                var finished: [String: [String: Any]] = [:]
                for (index, reader) in readers.enumerated() {
                    let user = users[index]
                    let mine = Set(created.filter { $0.value == user }.keys)
                    var done = Set<String>()
                    while done.count < mine.count, let frame = try await reader.nextEvent() {
                        guard let data = frame.data, let view = (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any],
                              let id = view["jobId"] as? String, mine.contains(id), isFinished(view)
                        else { continue }
                        done.insert(id)
                        finished[id] = view
                    }
                    #expect(done == mine, "user \(user): \(mine.subtracting(done).count) jobs not seen finishing")
                }
                #expect(finished.count == users.count * perUser)
                for (id, view) in finished {
                    #expect(view["status"] as? String == "completed", "\(id): \(view)")
                    #expect(view["audioStatus"] as? String == "completed", "\(id): \(view)")
                }
                // What fal-sim was asked: one video and one audio per job, none twice.
                let records = await stack.sim.requests()
                for round in 0..<perUser {
                    for user in users {
                        let count = records.filter { $0.input.contains("\(user)-\(round) a cluster job") }.count
                        #expect(count == 2, "\(user)-\(round): \(count) fal requests")
                    }
                }
                let counts = try await cluster.keyCounts()
                print("cluster end to end: \(finished.count) jobs; keys per master after a failover: \(counts.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))")
                #expect(counts.count == 3)
                #expect(counts.values.allSatisfy { $0 > 0 })
            }
        }
    }
}
