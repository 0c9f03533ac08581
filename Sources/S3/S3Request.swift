import Foundation

/// An HTTP request to send to S3, as plain values: what a transport needs and nothing it must work out.
///
/// Header names are lowercase. `host` is among them because it is signed; a transport that sets
/// the Host header from the URL itself (URLSession, AsyncHTTPClient) may leave it out, since the
/// value is the URL's host and port. `description` hides the signature and the session token.
public struct S3Request: Sendable, Equatable {
    public var method: String
    public var url: URL
    public var headers: [String: String]
    public var body: Data

    public init(method: String, url: URL, headers: [String: String] = [:], body: Data = Data()) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

extension S3Request: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    static let secretHeaders: Set<String> = ["authorization", "x-amz-security-token"]

    public var description: String {
        let shown = headers.keys.sorted().map { name in
            "\(name): \(Self.secretHeaders.contains(name.lowercased()) ? "<redacted>" : headers[name] ?? "")"
        }
        return "\(method) \(PresignedURL.redacted(url)) [\(shown.joined(separator: ", "))] \(body.count) bytes"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: ["request": description], displayStyle: .struct)
    }
}
