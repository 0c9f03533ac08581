import Foundation

/// An HTTP request as the fal client sends it: the whole body in memory.
public struct HTTPTransportRequest: Sendable, Hashable {
    public var method: String
    public var url: URL
    /// Header names as written; a transport sends them as given.
    public var headers: [String: String]
    public var body: [UInt8]?

    public init(method: String, url: URL, headers: [String: String] = [:], body: [UInt8]? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}
