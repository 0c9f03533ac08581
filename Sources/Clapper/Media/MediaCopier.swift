import Fal
import Foundation
import S3

/// Copies one media file from fal's URL into the bucket, at most `partSize` bytes in memory: the
/// source is read in ranges (`Range: bytes=…`), a file that fits one range goes up as one
/// `PutObject`, a larger one as a multipart upload of one part per range. Every S3 request is
/// signed with SigV4 (payload hashed). Writing the same key twice leaves one object.
struct MediaCopier: Sendable {
    let configuration: MediaCustodyConfiguration
    let transport: any HTTPTransport
    /// One request's deadline (a range from fal, a part to the bucket).
    var requestTimeout: Duration = .seconds(60)
    /// A source that ignores ranges is read whole, up to this.
    static let wholeSourceLimit = 512 * 1024 * 1024

    private var builder: S3RequestBuilder { S3RequestBuilder(location: configuration.location) }
    private var signer: AWSSigV4 { AWSSigV4(credentials: configuration.credentials, region: configuration.region) }

    /// Why a copy did not happen; `message` names the step and never holds a secret or URL query.
    struct Failure: Error, Sendable, CustomStringConvertible {
        var code: String
        var message: String
        var description: String { "\(code): \(message)" }
    }

    /// Copies `source` to `key`; returns the bytes copied.
    @discardableResult
    func copy(from source: URL, to key: String, contentType fallback: String) async throws(Failure) -> Int {
        let size = configuration.partSize
        let first = try await fetch(source, from: 0, count: size)
        let contentType = first.contentType ?? fallback
        // One request holds it all: a range the server ignored (the whole file), or the last range.
        if first.total.map({ $0 <= first.body.count }) ?? true {
            guard first.body.count <= size else { return try await upload(wholeBody: first.body, key: key, contentType: contentType) }
            try await send(try request { try builder.putObject(key: key, body: Data(first.body), contentType: contentType) }, step: "PutObject")
            return first.body.count
        }
        let total = first.total ?? first.body.count
        let uploadID = try await createUpload(key: key, contentType: contentType)
        do {
            var parts: [CompletedPart] = []
            var offset = 0
            var body = first.body
            while true {
                parts.append(try await uploadPart(key: key, uploadID: uploadID, number: parts.count + 1, body: body))
                offset += body.count
                if offset >= total { break }
                body = try await fetch(source, from: offset, count: min(size, total - offset)).body
                guard !body.isEmpty else { throw Failure(code: "source_short", message: "fal's media ended at \(offset) of \(total) bytes") }
            }
            try await complete(key: key, uploadID: uploadID, parts: parts)
            return total
        } catch {
            // Best effort: an upload left open holds storage until the bucket's lifecycle ends it.
            if let abort = try? request({ try builder.abortMultipartUpload(key: key, uploadID: uploadID) }) {
                _ = try? await send(abort, step: "AbortMultipartUpload")
            }
            throw (error as? Failure) ?? Failure(code: "copy", message: "\(error)")
        }
    }

    // MARK: The source (fal's media URL)

    private struct Range {
        var body: [UInt8]
        /// The whole file's size, when the server answered a range (206); nil: the body is the file.
        var total: Int?
        var contentType: String?
    }

    private func fetch(_ source: URL, from offset: Int, count: Int) async throws(Failure) -> Range {
        let request = HTTPTransportRequest(method: "GET", url: source, headers: ["Range": "bytes=\(offset)-\(offset + count - 1)"])
        let response: HTTPTransportResponse
        do {
            response = try await transport.send(request, timeout: requestTimeout)
        } catch {
            throw Failure(code: "source_unreachable", message: "fal's media could not be read (\(error.code))")
        }
        switch response.status {
        case 206:
            // `Content-Range: bytes a-b/total`.
            guard let text = response.header("Content-Range"), let slash = text.lastIndex(of: "/"),
                  let total = Int(text[text.index(after: slash)...]), total >= 0 else {
                throw Failure(code: "source_range", message: "fal's media answered a range without its size")
            }
            // More than was asked would break the memory bound of a copy.
            guard response.body.count <= count else {
                throw Failure(code: "source_range", message: "fal's media answered \(response.body.count) bytes for a range of \(count)")
            }
            return Range(body: response.body, total: total, contentType: response.header("Content-Type"))
        case 200 where offset == 0:
            guard response.body.count <= Self.wholeSourceLimit else {
                throw Failure(code: "source_too_large", message: "fal's media ignores ranges and is over \(Self.wholeSourceLimit) bytes")
            }
            return Range(body: response.body, total: nil, contentType: response.header("Content-Type"))
        default:
            throw Failure(code: "source_status_\(response.status)", message: "fal's media answered \(response.status)")
        }
    }

    // MARK: The bucket

    private func upload(wholeBody body: [UInt8], key: String, contentType: String) async throws(Failure) -> Int {
        let uploadID = try await createUpload(key: key, contentType: contentType)
        var parts: [CompletedPart] = []
        var offset = 0
        while offset < body.count {
            let end = min(body.count, offset + configuration.partSize)
            parts.append(try await uploadPart(key: key, uploadID: uploadID, number: parts.count + 1, body: Array(body[offset..<end])))
            offset = end
        }
        try await complete(key: key, uploadID: uploadID, parts: parts)
        return body.count
    }

    private func createUpload(key: String, contentType: String) async throws(Failure) -> String {
        let reply = try await send(try request { try builder.createMultipartUpload(key: key, contentType: contentType) }, step: "CreateMultipartUpload")
        guard let created = try? CreateMultipartUploadReply(xml: Data(reply.body)) else {
            throw Failure(code: "s3_reply", message: "CreateMultipartUpload: no UploadId in the bucket's reply")
        }
        return created.uploadID
    }

    private func uploadPart(key: String, uploadID: String, number: Int, body: [UInt8]) async throws(Failure) -> CompletedPart {
        let reply = try await send(try request { try builder.uploadPart(key: key, uploadID: uploadID, partNumber: number, body: Data(body)) }, step: "UploadPart")
        guard let etag = reply.header("ETag") else { throw Failure(code: "s3_reply", message: "UploadPart \(number): no ETag") }
        return CompletedPart(partNumber: number, etag: etag)
    }

    private func complete(key: String, uploadID: String, parts: [CompletedPart]) async throws(Failure) {
        let reply = try await send(try request { try builder.completeMultipartUpload(key: key, uploadID: uploadID, parts: parts) }, step: "CompleteMultipartUpload")
        // S3 may answer 200 and put its error in the body.
        if let error = S3ErrorReply(xml: Data(reply.body)) {
            throw Failure(code: "s3_\(error.code)", message: "CompleteMultipartUpload: \(error.code)")
        }
    }

    private func request(_ make: () throws -> S3Request) throws(Failure) -> S3Request {
        do {
            return try make()
        } catch {
            throw Failure(code: "s3_request", message: "\(error)")
        }
    }

    /// Signs and sends one S3 request; a non-2xx answer is a failure named by S3's error code.
    @discardableResult
    private func send(_ request: S3Request, step: String) async throws(Failure) -> HTTPTransportResponse {
        let signed = signer.sign(request, payload: .signed, at: Date())
        let outgoing = HTTPTransportRequest(method: signed.method, url: signed.url, headers: signed.headers, body: Array(signed.body))
        let response: HTTPTransportResponse
        do {
            response = try await transport.send(outgoing, timeout: requestTimeout)
        } catch {
            throw Failure(code: "s3_unreachable", message: "\(step): the bucket could not be reached (\(error.code))")
        }
        guard response.isSuccess else {
            let code = S3ErrorReply(xml: Data(response.body))?.code ?? "HTTP\(response.status)"
            throw Failure(code: "s3_\(code)", message: "\(step): the bucket answered \(response.status) \(code)")
        }
        return response
    }
}
