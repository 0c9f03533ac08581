import Metrics
import Synchronization

/// `clapper_redis_duration_seconds{command}`: how long each round trip took (a command, a batch,
/// a script), by its first command's name (`EVALSHA`, `HMGET`, …). Timers are made once per name.
enum RedisDurations {
    static let label = "clapper_redis_duration_seconds"
    private static let timers = Mutex<[String: Timer]>([:])

    static func timer(for command: RedisCommand?) -> Timer {
        let name = command?.arguments.first.map(Self.name) ?? "NONE"
        return timers.withLock { timers in
            if let timer = timers[name] { return timer }
            let timer = Timer(label: label, dimensions: [("command", name)])
            timers[name] = timer
            return timer
        }
    }

    /// The command name as a label value: upper-case ASCII letters only, at most 24 of them
    /// (anything else is `OTHER`), so no caller's bytes make new label values.
    static func name(_ bytes: [UInt8]) -> String {
        guard (1...24).contains(bytes.count), bytes.allSatisfy({ (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }) else { return "OTHER" }
        return String(decoding: bytes.map { (0x61...0x7A).contains($0) ? $0 - 0x20 : $0 }, as: UTF8.self)
    }
}
