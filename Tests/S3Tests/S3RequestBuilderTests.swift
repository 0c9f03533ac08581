import Foundation
import Testing

@testable import S3

@Suite struct S3RequestBuilderTests {
    let builder: S3RequestBuilder

    init() throws {
        builder = S3RequestBuilder(location: try S3Location(bucketURL: "http://127.0.0.1:9000/media-bucket"))
    }

    static let key = "clapper/video/3f2504e0.mp4"
    static let objectURL = "http://127.0.0.1:9000/media-bucket/clapper/video/3f2504e0.mp4"

    @Test func putObject() throws {
        let request = try builder.putObject(key: Self.key, body: Data("movie".utf8), contentType: "video/mp4")
        #expect(request.method == "PUT")
        #expect(request.url.absoluteString == Self.objectURL)
        #expect(request.headers == ["host": "127.0.0.1:9000", "content-type": "video/mp4"])
        #expect(request.body == Data("movie".utf8))
    }

    @Test func createMultipartUpload() throws {
        let request = try builder.createMultipartUpload(key: Self.key, contentType: "video/mp4")
        #expect(request.method == "POST")
        #expect(request.url.absoluteString == Self.objectURL + "?uploads")
        #expect(request.headers["content-type"] == "video/mp4")
        #expect(request.body.isEmpty)
    }

    @Test func uploadPart() throws {
        let request = try builder.uploadPart(key: Self.key, uploadID: "id/+=x", partNumber: 2, body: Data([1, 2]))
        #expect(request.method == "PUT")
        #expect(request.url.absoluteString == Self.objectURL + "?partNumber=2&uploadId=id%2F%2B%3Dx")
        #expect(request.body == Data([1, 2]))
        // Signing sees the upload ID exactly as it was given.
        #expect(AWSSigV4.queryItems(request.url.query(percentEncoded: true)).map(\.1) == ["2", "id/+=x"])
    }

    @Test(arguments: [0, -1, 10_001, Int.max])
    func uploadPartRefusesPartNumbers(_ number: Int) {
        #expect(throws: S3Error.self) { try builder.uploadPart(key: Self.key, uploadID: "u", partNumber: number, body: Data()) }
    }

    @Test func completeMultipartUpload() throws {
        let parts = [CompletedPart(partNumber: 1, etag: "\"a54357aff0632cce46d942af68356b38\""), CompletedPart(partNumber: 2, etag: "\"0c78aef83f66abc1fa1e8477f296d394\"")]
        let request = try builder.completeMultipartUpload(key: Self.key, uploadID: "u-1", parts: parts)
        #expect(request.method == "POST")
        #expect(request.url.absoluteString == Self.objectURL + "?uploadId=u-1")
        #expect(request.headers["content-type"] == "application/xml")
        #expect(
            String(decoding: request.body, as: UTF8.self)
                == #"<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#
                + "<Part><PartNumber>1</PartNumber><ETag>&quot;a54357aff0632cce46d942af68356b38&quot;</ETag></Part>"
                + "<Part><PartNumber>2</PartNumber><ETag>&quot;0c78aef83f66abc1fa1e8477f296d394&quot;</ETag></Part>"
                + "</CompleteMultipartUpload>")
    }

    @Test func completeMultipartUploadRefusesBadPartLists() {
        let bad: [[CompletedPart]] = [
            [],
            [CompletedPart(partNumber: 2, etag: "a"), CompletedPart(partNumber: 1, etag: "b")],
            [CompletedPart(partNumber: 1, etag: "a"), CompletedPart(partNumber: 1, etag: "b")],
            [CompletedPart(partNumber: 0, etag: "a")],
            [CompletedPart(partNumber: 1, etag: "")],
        ]
        for parts in bad {
            #expect(throws: S3Error.self) { try builder.completeMultipartUpload(key: Self.key, uploadID: "u", parts: parts) }
        }
        #expect(throws: S3Error.self) {
            try builder.completeMultipartUpload(key: Self.key, uploadID: "", parts: [CompletedPart(partNumber: 1, etag: "a")])
        }
    }

    @Test func abortAndHead() throws {
        let abort = try builder.abortMultipartUpload(key: Self.key, uploadID: "u 1")
        #expect(abort.method == "DELETE")
        #expect(abort.url.absoluteString == Self.objectURL + "?uploadId=u%201")
        let head = try builder.headObject(key: Self.key)
        #expect(head.method == "HEAD")
        #expect(head.url.absoluteString == Self.objectURL)
        #expect(head.headers == ["host": "127.0.0.1:9000"])
    }

    @Test func xmlEscaping() {
        #expect(S3RequestBuilder.xmlEscaped(#"<a href="x">&'"#) == "&lt;a href=&quot;x&quot;&gt;&amp;&apos;")
    }
}
