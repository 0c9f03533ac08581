import Crypto
import Foundation

/// AWS Signature Version 4 (AWS4-HMAC-SHA256), as S3 checks it.
///
/// Pure: the time is a parameter, nothing is read from the environment. S3 rules apply: the path
/// is the URI-encoded object key, encoded once (S3 does not double-encode it as other services do),
/// and every request carries `x-amz-content-sha256`.
public struct AWSSigV4: Sendable {
    public static let algorithm = "AWS4-HMAC-SHA256"
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// The longest lifetime S3 accepts for a presigned URL: seven days.
    public static let presignLifetimes = 1...604_800

    /// What `x-amz-content-sha256` (and the canonical request's last line) says of the body.
    public enum Payload: Sendable, Equatable {
        /// The hex SHA-256 of the body: S3 checks the body against it.
        case signed
        /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature (TLS is what protects it).
        case unsigned
    }

    public let credentials: S3Credentials
    public let region: String
    public let service: String

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// `request` with `host`, `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` (with
    /// temporary credentials) and `authorization` set. Every header of the result is signed.
    public func sign(_ request: S3Request, payload: Payload = .signed, at date: Date) -> S3Request {
        var signed = request
        // Lowercase names, so a caller's "Host" or "X-Amz-Date" is replaced rather than doubled.
        signed.headers = Dictionary(
            request.headers.sorted { $0.key < $1.key }.map { ($0.key.lowercased(), $0.value) },
            uniquingKeysWith: { first, _ in first })
        signed.headers["authorization"] = nil
        let payloadHash = payload == .signed ? Self.sha256Hex(request.body) : Self.unsignedPayload
        if signed.headers["host"] == nil, let host = Self.hostHeader(of: request.url) {
            signed.headers["host"] = host
        }
        signed.headers["x-amz-date"] = AmzDate(date).timestamp
        signed.headers["x-amz-content-sha256"] = payloadHash
        if let token = credentials.sessionToken {
            signed.headers["x-amz-security-token"] = token
        }
        signed.headers["authorization"] = authorization(
            method: signed.method, url: signed.url, headers: signed.headers, payloadHash: payloadHash, at: date)
        return signed
    }

    /// The `Authorization` header for a request whose headers are final: all of them are signed,
    /// none is added (the caller's must already hold `host` and `x-amz-date`).
    public func authorization(
        method: String, url: URL, headers: [String: String], payloadHash: String, at date: Date
    ) -> String {
        let stamp = AmzDate(date)
        let canonical = canonicalRequest(method: method, url: url, headers: headers, payloadHash: payloadHash)
        let signature = signature(of: stringToSign(canonicalRequest: canonical.text, at: stamp), on: stamp)
        return "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope(stamp)), "
            + "SignedHeaders=\(canonical.signedHeaders), Signature=\(signature)"
    }

    /// A URL for `method` on `url` that needs no headers: query authentication, `host` the only
    /// signed header, the payload unsigned. `expiresIn` is in seconds, 1...604800.
    public func presign(
        method: String = "GET", url: URL, expiresIn: Int, at date: Date
    ) throws(S3Error) -> PresignedURL {
        guard Self.presignLifetimes.contains(expiresIn) else {
            throw S3Error(.invalidPresign, "X-Amz-Expires must be within 1...604800 seconds, not \(expiresIn)")
        }
        guard let components = URLComponents(url: url, resolvingAgainstBaseURL: false),
            let scheme = components.scheme, let host = Self.hostHeader(of: url)
        else {
            throw S3Error(.invalidPresign, "the URL to presign has no scheme or host")
        }
        let stamp = AmzDate(date)
        var query = Self.queryItems(components.percentEncodedQuery)
        query += [
            ("X-Amz-Algorithm", Self.algorithm),
            ("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope(stamp))"),
            ("X-Amz-Date", stamp.timestamp),
            ("X-Amz-Expires", String(expiresIn)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        if let token = credentials.sessionToken {
            query.append(("X-Amz-Security-Token", token))
        }
        let path = Self.canonicalURI(components.percentEncodedPath)
        let canonicalQuery = Self.canonicalQuery(query)
        let canonical = [method, path, canonicalQuery, "host:\(host)\n", "host", Self.unsignedPayload]
            .joined(separator: "\n")
        let signature = signature(of: stringToSign(canonicalRequest: canonical, at: stamp), on: stamp)
        let text = "\(scheme)://\(host)\(path)?\(canonicalQuery)&X-Amz-Signature=\(signature)"
        guard let presigned = URL(string: text) else {
            throw S3Error(.invalidPresign, "the presigned URL does not parse")
        }
        return PresignedURL(url: presigned, expiresIn: expiresIn)
    }

    // MARK: - The steps, in the order AWS documents them

    struct CanonicalRequest: Equatable {
        var text: String
        var signedHeaders: String
    }

    func canonicalRequest(method: String, url: URL, headers: [String: String], payloadHash: String) -> CanonicalRequest {
        let components = URLComponents(url: url, resolvingAgainstBaseURL: false)
        var byName: [String: [String]] = [:]
        for name in headers.keys.sorted() where name.lowercased() != "authorization" {
            byName[name.lowercased(), default: []].append(Self.trimmed(headers[name] ?? ""))
        }
        let names = byName.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(byName[$0, default: []].joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let text = [
            method,
            Self.canonicalURI(components?.percentEncodedPath ?? ""),
            Self.canonicalQuery(Self.queryItems(components?.percentEncodedQuery)),
            canonicalHeaders,
            signedHeaders,
            payloadHash,
        ].joined(separator: "\n")
        return CanonicalRequest(text: text, signedHeaders: signedHeaders)
    }

    func stringToSign(canonicalRequest: String, at stamp: AmzDate) -> String {
        [Self.algorithm, stamp.timestamp, scope(stamp), Self.sha256Hex(Data(canonicalRequest.utf8))]
            .joined(separator: "\n")
    }

    func signingKey(on stamp: AmzDate) -> SymmetricKey {
        let secret = SymmetricKey(data: Data("AWS4\(credentials.secretAccessKey)".utf8))
        let key = [stamp.dateStamp, region, service, "aws4_request"].reduce(secret) { key, part in
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    func signature(of stringToSign: String, on stamp: AmzDate) -> String {
        HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: signingKey(on: stamp)).hex
    }

    func scope(_ stamp: AmzDate) -> String {
        "\(stamp.dateStamp)/\(region)/\(service)/aws4_request"
    }

    // MARK: - Canonical forms

    public static func sha256Hex(_ data: Data) -> String {
        SHA256.hash(data: data).hex
    }

    /// The path as S3 signs it: each segment decoded, then encoded once with SigV4's rule.
    static func canonicalURI(_ percentEncodedPath: String) -> String {
        guard !percentEncodedPath.isEmpty else { return "/" }
        return percentEncodedPath.split(separator: "/", omittingEmptySubsequences: false)
            .map { AWSURIEncoding.encode(AWSURIEncoding.decode(String($0))) }
            .joined(separator: "/")
    }

    /// Name/value pairs of a query as sent (`a=1&b`), decoded. A name without `=` has the value "".
    static func queryItems(_ percentEncodedQuery: String?) -> [(String, String)] {
        guard let query = percentEncodedQuery, !query.isEmpty else { return [] }
        return query.split(separator: "&").map { item in
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let value = parts.count > 1 ? String(parts[1]) : ""
            return (AWSURIEncoding.decode(String(parts[0])), AWSURIEncoding.decode(value))
        }
    }

    /// Encoded `name=value` pairs sorted by name, then value, joined with `&`.
    static func canonicalQuery(_ items: [(String, String)]) -> String {
        items.map { (AWSURIEncoding.encode($0.0), AWSURIEncoding.encode($0.1)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// Leading and trailing spaces gone, runs of spaces inside made one.
    static func trimmed(_ value: String) -> String {
        value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `host[:port]` of a URL, the port left out when it is the scheme's default.
    static func hostHeader(of url: URL) -> String? {
        guard let components = URLComponents(url: url, resolvingAgainstBaseURL: false),
            let host = components.percentEncodedHost, !host.isEmpty
        else { return nil }
        return S3Location.hostHeader(scheme: components.scheme ?? "", host: host, port: components.port)
    }
}

extension AWSSigV4: CustomStringConvertible {
    public var description: String { "AWSSigV4(\(credentials), region: \(region), service: \(service))" }
}

extension Sequence<UInt8> {
    /// Lowercase hex, two digits a byte.
    var hex: String {
        let digits = Array("0123456789abcdef".unicodeScalars)
        var text = ""
        for byte in self {
            text.unicodeScalars.append(digits[Int(byte >> 4)])
            text.unicodeScalars.append(digits[Int(byte & 0x0F)])
        }
        return text
    }
}
