/// Which master serves each of Redis Cluster's 16384 slots, as `CLUSTER SLOTS` told it.
public struct RedisClusterTopology: Sendable, Hashable {
    /// The masters that serve at least one slot.
    public private(set) var masters: [RedisAddress] = []
    /// Per slot, 1 + the index of its master in `masters`; 0 where no node serves it.
    private var owners = [UInt16](repeating: 0, count: RedisClusterSlot.count)

    public func master(ofSlot slot: Int) -> RedisAddress? {
        guard owners.indices.contains(slot) else { return nil }
        let owner = Int(owners[slot])
        return owner == 0 ? nil : masters[owner - 1]
    }

    /// Slots no master serves.
    public var unassignedSlots: Int { owners.lazy.filter { $0 == 0 }.count }

    /// Reads a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, …], replica…], …]`. A node
    /// that writes its host as empty means the node asked (`askedHost`). Entries of another shape
    /// or with slots out of range make the whole reply unreadable (nil): a bad topology routes
    /// every command wrong, so none is better.
    public init?(clusterSlots reply: RedisValue, askedHost: String) {
        guard let ranges = reply.array else { return nil }
        var index: [RedisAddress: UInt16] = [:]
        for range in ranges {
            guard let parts = range.array, parts.count >= 3,
                  let start = parts[0].integer, let end = parts[1].integer,
                  start >= 0, start <= end, end < Int64(RedisClusterSlot.count),
                  let node = parts[2].array, node.count >= 2,
                  let host = node[0].string, let port = node[1].integer, (1...65535).contains(port)
            else { return nil }
            let address = RedisAddress(host: host.isEmpty || host == "?" ? askedHost : host, port: Int(port))
            let owner: UInt16
            if let known = index[address] {
                owner = known
            } else {
                // More masters than slots is no cluster: refused, never trapped on.
                guard masters.count < RedisClusterSlot.count, let next = UInt16(exactly: masters.count + 1) else { return nil }
                masters.append(address)
                owner = next
                index[address] = owner
            }
            for slot in Int(start)...Int(end) { owners[slot] = owner }
        }
    }
}
