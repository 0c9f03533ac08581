import Foundation

/// The unsigned requests Clapper sends to copy an object into a bucket: method, URL, headers, body.
/// Sign them with `AWSSigV4.sign(_:payload:at:)`.
public struct S3RequestBuilder: Sendable {
    /// The part numbers S3 accepts.
    public static let partNumbers = 1...10_000
    /// The smallest size S3 accepts for every part but the last: 5 MiB.
    public static let minimumPartSize = 5 * 1024 * 1024

    public let location: S3Location

    public init(location: S3Location) {
        self.location = location
    }

    /// PutObject: the whole object in one request.
    public func putObject(key: String, body: Data, contentType: String) throws(S3Error) -> S3Request {
        try request("PUT", key: key, headers: ["content-type": contentType], body: body)
    }

    /// CreateMultipartUpload: its reply (`CreateMultipartUploadReply`) holds the upload ID.
    public func createMultipartUpload(key: String, contentType: String) throws(S3Error) -> S3Request {
        try request("POST", key: key, query: "uploads", headers: ["content-type": contentType])
    }

    /// UploadPart: part `partNumber` (1...10000) of the upload; its reply's ETag header names the part.
    public func uploadPart(key: String, uploadID: String, partNumber: Int, body: Data) throws(S3Error) -> S3Request {
        guard Self.partNumbers.contains(partNumber) else {
            throw S3Error(.invalidMultipart, "a part number is within 1...10000, not \(partNumber)")
        }
        return try request("PUT", key: key, query: "partNumber=\(partNumber)&\(try Self.uploadQuery(uploadID))", body: body)
    }

    /// CompleteMultipartUpload: the parts in ascending order. S3 can answer 200 with an `<Error>`
    /// body here, so check the reply with `S3ErrorReply(xml:)` whatever its status.
    public func completeMultipartUpload(key: String, uploadID: String, parts: [CompletedPart]) throws(S3Error) -> S3Request {
        guard !parts.isEmpty else {
            throw S3Error(.invalidMultipart, "CompleteMultipartUpload lists at least one part")
        }
        var previous = 0
        for part in parts {
            guard Self.partNumbers.contains(part.partNumber), part.partNumber > previous, !part.etag.isEmpty else {
                throw S3Error(.invalidMultipart, "parts are listed once each, in ascending order (1...10000), with their ETags")
            }
            previous = part.partNumber
        }
        let listed = parts.map {
            "<Part><PartNumber>\($0.partNumber)</PartNumber><ETag>\(Self.xmlEscaped($0.etag))</ETag></Part>"
        }
        let xml = #"<?xml version="1.0" encoding="UTF-8"?>"#
            + #"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#
            + listed.joined() + "</CompleteMultipartUpload>"
        return try request(
            "POST", key: key, query: try Self.uploadQuery(uploadID), headers: ["content-type": "application/xml"],
            body: Data(xml.utf8))
    }

    /// AbortMultipartUpload: S3 drops the parts uploaded so far.
    public func abortMultipartUpload(key: String, uploadID: String) throws(S3Error) -> S3Request {
        try request("DELETE", key: key, query: try Self.uploadQuery(uploadID))
    }

    /// HeadObject: the object's metadata (Content-Length, ETag) without its body.
    public func headObject(key: String) throws(S3Error) -> S3Request {
        try request("HEAD", key: key)
    }

    private func request(
        _ method: String, key: String, query: String? = nil, headers: [String: String] = [:], body: Data = Data()
    ) throws(S3Error) -> S3Request {
        var url = try location.objectURL(key: key)
        if let query {
            guard let withQuery = URL(string: url.absoluteString + "?" + query) else {
                throw S3Error(.invalidKey, "the request URL does not parse")
            }
            url = withQuery
        }
        var headers = headers
        headers["host"] = location.hostHeader
        return S3Request(method: method, url: url, headers: headers, body: body)
    }

    private static func uploadQuery(_ uploadID: String) throws(S3Error) -> String {
        guard !uploadID.isEmpty else {
            throw S3Error(.invalidMultipart, "the upload ID is empty")
        }
        return "uploadId=" + AWSURIEncoding.encode(uploadID)
    }

    static func xmlEscaped(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&apos;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
