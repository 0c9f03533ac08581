/// Redis Cluster's key -> slot mapping: CRC16 (XMODEM) of the key, or of its hash tag (the part
/// between the first `{` and the next `}`, when not empty), modulo 16384.
public enum RedisClusterSlot {
    public static let count = 16384

    public static func of<Key: Collection<UInt8>>(_ key: Key) -> Int {
        var tagged = key[...]
        if let open = key.firstIndex(of: UInt8(ascii: "{")) {
            let rest = key[key.index(after: open)...]
            if let close = rest.firstIndex(of: UInt8(ascii: "}")), close != rest.startIndex {
                tagged = rest[..<close]
            }
        }
        return Int(crc16(tagged) & 0x3FFF)
    }

    public static func of(_ key: String) -> Int { of(Array(key.utf8)) }

    /// The slot a command goes to: the slot of its first key, nil for a command without keys
    /// (PING, SCRIPT, WAIT, an EVALSHA with no keys), which any node may answer.
    public static func of(_ command: RedisCommand) -> Int? {
        key(of: command).map { of($0) }
    }

    static func key(of command: RedisCommand) -> [UInt8]? {
        let arguments = command.arguments
        guard let name = arguments.first else { return nil }
        switch String(decoding: name, as: UTF8.self).uppercased() {
        case "PING", "TIME", "SCRIPT", "WAIT", "INFO", "CLUSTER", "ASKING", "READONLY", "PUBLISH", "SUBSCRIBE", "DBSIZE", "FLUSHALL", "AUTH", "SELECT", "HELLO", "CLIENT":
            return nil
        case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
            guard arguments.count > 3, let keys = Int(String(decoding: arguments[2], as: UTF8.self)), keys > 0 else { return nil }
            return arguments[3]
        default:
            return arguments.count > 1 ? arguments[1] : nil
        }
    }

    private static func crc16<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int((crc >> 8) ^ UInt16(byte)) & 0xFF]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}
