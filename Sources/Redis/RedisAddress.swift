/// Where one Redis node listens.
public struct RedisAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port` as Redis writes it in `MOVED`/`ASK` replies (the host may be empty: the node
    /// that answered, `fallbackHost`); nil when it is not that.
    init?(redirect text: Substring, fallbackHost: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        let host = String(text[..<colon])
        self.init(host: host.isEmpty ? fallbackHost : host, port: port)
    }

    public var description: String { "\(host):\(port)" }
}
