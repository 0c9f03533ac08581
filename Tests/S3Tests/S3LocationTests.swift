import Foundation
import Testing

@testable import S3

@Suite struct S3LocationTests {
    @Test func pathStyleOnAnAddress() throws {
        let location = try S3Location(bucketURL: "http://127.0.0.1:9000/media-bucket")
        #expect(location.bucket == "media-bucket")
        #expect(location.addressing == .path)
        #expect(location.hostHeader == "127.0.0.1:9000")
        #expect(location.bucketURL.absoluteString == "http://127.0.0.1:9000/media-bucket")
        let key = "clapper/video/3F2504E0-4F89-11D3-9A0C-0305E82C3301.mp4"
        #expect(try location.objectURL(key: key).absoluteString == "http://127.0.0.1:9000/media-bucket/\(key)")
    }

    @Test func virtualHosted() throws {
        let location = try S3Location(bucketURL: "https://media-bucket.s3.eu-west-1.amazonaws.com")
        #expect(location.bucket == "media-bucket")
        #expect(location.addressing == .virtualHost)
        #expect(location.hostHeader == "media-bucket.s3.eu-west-1.amazonaws.com")
        #expect(
            try location.objectURL(key: "clapper/video/a.mp4").absoluteString
                == "https://media-bucket.s3.eu-west-1.amazonaws.com/clapper/video/a.mp4")
    }

    @Test func addressingInferredAndExplicit() throws {
        #expect(try S3Location(bucketURL: "http://localhost:9000/b-1").addressing == .path)
        #expect(try S3Location(bucketURL: "http://[::1]:9000/b-1").hostHeader == "[::1]:9000")
        #expect(try S3Location(bucketURL: "https://minio.example.com/b-1/").addressing == .path)
        #expect(try S3Location(bucketURL: "https://minio.example.com/b-1", addressing: .path).bucket == "b-1")
        let explicit = try S3Location(bucketURL: "https://b-1.minio.example.com:9443", addressing: .virtualHost)
        #expect(explicit.hostHeader == "b-1.minio.example.com:9443")
        #expect(explicit.bucket == "b-1")
    }

    @Test func defaultPortsAndCaseAreNormalised() throws {
        let location = try S3Location(bucketURL: " HTTPS://Media-Bucket.S3.amazonaws.com:443 \n")
        #expect(location.hostHeader == "media-bucket.s3.amazonaws.com")
        #expect(location.bucketURL.absoluteString == "https://media-bucket.s3.amazonaws.com/")
        #expect(try S3Location(bucketURL: "http://127.0.0.1:80/bkt").hostHeader == "127.0.0.1")
    }

    @Test func keysAreEncodedOnceSegmentBySegment() throws {
        let location = try S3Location(bucketURL: "http://127.0.0.1:9000/bkt")
        #expect(
            try location.objectURL(key: "photos/été 2013/a+b (1)~x_y-z.jpg").absoluteString
                == "http://127.0.0.1:9000/bkt/photos/%C3%A9t%C3%A9%202013/a%2Bb%20%281%29~x_y-z.jpg")
        #expect(try S3Location.encodedKey("a%2Fb?c#d") == "a%252Fb%3Fc%23d")
    }

    @Test(arguments: [
        "", "   ", "not a url", "ftp://host/bucket", "http://", "http:///bucket", "http://user:pw@host/bucket",
        "http://host/bucket?x=1", "http://host/bucket#frag", "http://host:0/bucket", "http://host:70000/bucket",
        "http://127.0.0.1:9000", "http://127.0.0.1:9000/a/b", "http://127.0.0.1/UPPER", "http://127.0.0.1/ab",
        "http://127.0.0.1/-bucket", "http://127.0.0.1/bucket-", "http://127.0.0.1/bu_cket", "http://127.0.0.1/b%41cket",
        "https://s3host", "http://localhost", String(repeating: "x", count: 100_000), "http://[::1", "http://h/\u{0}",
        "http://127.0.0.1/" + String(repeating: "a", count: 64),
    ])
    func refusedBucketURLs(_ text: String) {
        #expect(throws: S3Error.self) { try S3Location(bucketURL: text) }
        do {
            _ = try S3Location(bucketURL: text)
        } catch {
            #expect(error.code == .invalidBucketURL)
            #expect(error.message.count < 300)
        }
    }

    @Test func explicitAddressingThatCannotWork() {
        #expect(throws: S3Error.self) { try S3Location(bucketURL: "http://127.0.0.1:9000", addressing: .virtualHost) }
        #expect(throws: S3Error.self) { try S3Location(bucketURL: "https://b.s3.amazonaws.com/b", addressing: .virtualHost) }
        #expect(throws: S3Error.self) { try S3Location(bucketURL: "https://b.s3.amazonaws.com", addressing: .path) }
    }

    @Test(arguments: ["", "/leading", "trailing/", "a//b", ".", "a/./b", "a/../b", String(repeating: "k", count: 1025)])
    func refusedKeys(_ key: String) throws {
        let location = try S3Location(bucketURL: "http://127.0.0.1:9000/bkt")
        #expect(throws: S3Error.self) { try location.objectURL(key: key) }
    }

    @Test func longestKey() throws {
        let location = try S3Location(bucketURL: "http://127.0.0.1:9000/bkt")
        _ = try location.objectURL(key: String(repeating: "é", count: 512))
    }

    @Test func bucketURLErrorsDoNotEchoPasswords() {
        do {
            _ = try S3Location(bucketURL: "http://AKID:hunter2@127.0.0.1:9000/bkt")
            Issue.record("a URL with a password was accepted")
        } catch {
            #expect(!error.message.contains("hunter2"))
        }
    }
}
