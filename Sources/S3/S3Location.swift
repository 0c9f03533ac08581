import Foundation

/// A bucket on an S3-compatible server, parsed from the URL an operator configures.
///
/// - Path-style, `http://127.0.0.1:9000/media-bucket`: the bucket is the first path segment.
/// - Virtual-hosted, `https://media-bucket.s3.eu-west-1.amazonaws.com`: the bucket is the host's first label.
///
/// Without an explicit `addressing`, an IP address or `localhost` means `.path`, as does any URL
/// with a path; a DNS name with no path means `.virtualHost`.
public struct S3Location: Sendable, Equatable {
    public enum Addressing: Sendable, Equatable {
        case path
        case virtualHost
    }

    public let bucket: String
    public let addressing: Addressing
    /// Where requests for the bucket go: `scheme://host[:port]` plus `/bucket` when path-style.
    public let bucketURL: URL
    /// The Host header requests carry: the host, and the port unless it is the scheme's default.
    public let hostHeader: String

    /// The longest key S3 accepts, in UTF-8 bytes.
    public static let maximumKeyLength = 1024

    public init(bucketURL text: String, addressing requested: Addressing? = nil) throws(S3Error) {
        let text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https"
        else {
            throw S3Error(.invalidBucketURL, "a bucket URL is http(s)://host[:port][/bucket]")
        }
        guard components.user == nil, components.password == nil else {
            throw S3Error(.invalidBucketURL, "a bucket URL carries no user or password (give credentials apart)")
        }
        guard components.percentEncodedQuery == nil, components.fragment == nil else {
            throw S3Error(.invalidBucketURL, "a bucket URL has no query or fragment")
        }
        guard let host = components.percentEncodedHost?.lowercased(), !host.isEmpty, !host.contains("%") else {
            throw S3Error(.invalidBucketURL, "the bucket URL has no host")
        }
        if let port = components.port, !(1...65535).contains(port) {
            throw S3Error(.invalidBucketURL, "the port must be within 1...65535, not \(port)")
        }
        let segments = components.percentEncodedPath.split(separator: "/").map(String.init)
        guard segments.count <= 1 else {
            throw S3Error(.invalidBucketURL, "a bucket URL's path is the bucket alone, not \(Self.quoted(components.percentEncodedPath))")
        }
        let isLocal = Self.isAddressOrLocalhost(host)
        let addressing = requested ?? (isLocal || !segments.isEmpty ? .path : .virtualHost)
        let authority = Self.hostHeader(scheme: scheme, host: host, port: components.port)

        switch addressing {
        case .path:
            guard let bucket = segments.first else {
                throw S3Error(.invalidBucketURL, "a path-style bucket URL names the bucket as its path: http(s)://host/bucket")
            }
            self.bucket = bucket
        case .virtualHost:
            guard !isLocal else {
                throw S3Error(.invalidBucketURL, "an IP address or localhost has no bucket label: use path-style addressing")
            }
            guard segments.isEmpty else {
                throw S3Error(.invalidBucketURL, "a virtual-hosted bucket URL has no path; the bucket is the host's first label")
            }
            let labels = host.split(separator: ".", maxSplits: 1)
            guard labels.count == 2, let bucket = labels.first else {
                throw S3Error(.invalidBucketURL, "the host \(Self.quoted(host)) has no bucket label before the endpoint")
            }
            self.bucket = String(bucket)
        }
        try Self.validate(bucket: bucket)
        let base = "\(scheme)://\(authority)" + (addressing == .path ? "/\(bucket)" : "/")
        guard let url = URL(string: base) else {
            throw S3Error(.invalidBucketURL, "the bucket URL does not parse as \(Self.quoted(base))")
        }
        self.addressing = addressing
        self.bucketURL = url
        self.hostHeader = authority
    }

    /// The URL of an object: the bucket URL and the key, each of its segments percent-encoded once.
    public func objectURL(key: String) throws(S3Error) -> URL {
        let path = try Self.encodedKey(key)
        let base = bucketURL.absoluteString
        let text = base.hasSuffix("/") ? base + path : base + "/" + path
        guard let url = URL(string: text) else {
            throw S3Error(.invalidKey, "the object URL does not parse")
        }
        return url
    }

    /// `key` as it goes into a URL path: segments split on `/`, each encoded with SigV4's rule.
    /// Refuses an empty or too long key, and empty, `.` or `..` segments (HTTP clients rewrite those).
    public static func encodedKey(_ key: String) throws(S3Error) -> String {
        guard !key.isEmpty, key.utf8.count <= maximumKeyLength else {
            throw S3Error(.invalidKey, "an object key is 1...\(maximumKeyLength) UTF-8 bytes, not \(key.utf8.count)")
        }
        let segments = key.split(separator: "/", omittingEmptySubsequences: false)
        for segment in segments where segment.isEmpty || segment == "." || segment == ".." {
            throw S3Error(.invalidKey, "an object key has no empty, \".\" or \"..\" segment: \(quoted(key))")
        }
        return segments.map { AWSURIEncoding.encode(String($0)) }.joined(separator: "/")
    }

    /// `host[:port]`, the port left out when it is the scheme's default.
    static func hostHeader(scheme: String, host: String, port: Int?) -> String {
        let defaultPort = scheme.lowercased() == "https" ? 443 : 80
        guard let port, port != defaultPort else { return host }
        return "\(host):\(port)"
    }

    /// Today's S3 bucket naming rules: 3...63 of `a-z 0-9 . -`, starting and ending with a letter or digit.
    static func validate(bucket: String) throws(S3Error) {
        let bytes = Array(bucket.utf8)
        func isAlphanumeric(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
        guard (3...63).contains(bytes.count),
            bytes.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }),
            let first = bytes.first, let last = bytes.last, isAlphanumeric(first), isAlphanumeric(last)
        else {
            throw S3Error(.invalidBucketURL, "\(quoted(bucket)) is not a bucket name (3-63 of a-z 0-9 . -)")
        }
    }

    /// `localhost`, a bracketed IPv6 address, or a dotted IPv4 address.
    static func isAddressOrLocalhost(_ host: String) -> Bool {
        if host == "localhost" || host.hasPrefix("[") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            (1...3).contains(part.count) && part.allSatisfy { ("0"..."9").contains($0) } && UInt8(part) != nil
        }
    }

    /// Input echoed into a message, cut short and quoted.
    static func quoted(_ text: String) -> String {
        let limit = 120
        return "\"" + (text.count > limit ? text.prefix(limit) + "…" : text) + "\""
    }
}
