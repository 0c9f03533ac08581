import Crypto
import Foundation
import Redis

/// fal results by model and exact input, for repeated prompts (`CLAPPER_RESULT_CACHE`, or a job's
/// `cache: true`): a task whose model and input bytes equal those of a completed one reuses its
/// result while the media lives, instead of paying fal again. One hash per (model, input):
/// `media`, `output` (fal's raw bytes), expiring with the media.
struct ResultCache: Sendable {
    let redis: RedisClient
    let keys: JobKeys

    struct Hit: Sendable, Hashable {
        var mediaURL: String
        var output: [UInt8]
    }

    /// Lowercase hex SHA-256 of the model id, a newline and the input bytes Clapper sends.
    static func fingerprint(model: String, input: [UInt8]) -> String {
        var hash = SHA256()
        hash.update(data: Array(model.utf8) + [0x0A])
        hash.update(data: input)
        return hash.finalize().hex
    }

    func key(_ fingerprint: String) -> String { "\(keys.prefix):cache:{\(fingerprint)}" }

    func lookup(model: String, input: [UInt8]) async throws -> Hit? {
        let reply = try await redis.send(RedisCommand("HMGET", key(Self.fingerprint(model: model, input: input)), "media", "output"))
        guard let fields = reply.array, fields.count == 2, let media = fields[0].string, !media.isEmpty, let output = fields[1].bytes else { return nil }
        return Hit(mediaURL: media, output: output)
    }

    /// Keeps a completed task's result for `seconds` (at least 1).
    func store(model: String, input: [UInt8], hit: Hit, seconds: Int) async throws {
        let key = key(Self.fingerprint(model: model, input: input))
        _ = try await redis.pipeline([
            RedisCommand("HSET", key, "media", hit.mediaURL, "output", hit.output),
            RedisCommand("EXPIRE", key, max(1, seconds)),
        ])
    }
}
