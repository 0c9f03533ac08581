import Foundation
import Testing

@testable import S3

@Suite struct S3ReplyParsingTests {
    static let initiate = """
        <?xml version="1.0" encoding="UTF-8"?>
        <InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
          <Bucket>media-bucket</Bucket>
          <Key>clapper/video/a.mp4</Key>
          <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
        </InitiateMultipartUploadResult>
        """

    static let slowDown = """
        <?xml version="1.0" encoding="UTF-8"?>
        <Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>\
        <Resource>/media-bucket/a.mp4</Resource><RequestId>4442587FB7D0A2F9</RequestId></Error>
        """

    @Test func createMultipartUploadReply() throws {
        let reply = try CreateMultipartUploadReply(xml: Data(Self.initiate.utf8))
        #expect(reply.uploadID == "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA")
        #expect(reply.bucket == "media-bucket")
        #expect(reply.key == "clapper/video/a.mp4")
    }

    @Test func errorReply() throws {
        let reply = try #require(S3ErrorReply(xml: Data(Self.slowDown.utf8)))
        #expect(reply.code == "SlowDown")
        #expect(reply.message == "Please reduce your request rate.")
        #expect(reply.resource == "/media-bucket/a.mp4")
        #expect(reply.requestID == "4442587FB7D0A2F9")
        #expect(reply.isRetryable)
        #expect(S3ErrorReply(xml: Data("<Error><Code>NoSuchUpload</Code></Error>".utf8))?.isRetryable == false)
        #expect(S3ErrorReply(xml: Data("<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>".utf8))?.code == "AccessDenied")
    }

    @Test func escapedTextAndCDATA() throws {
        let xml = "<InitiateMultipartUploadResult><UploadId>a&amp;b<![CDATA[<c>]]></UploadId></InitiateMultipartUploadResult>"
        #expect(try CreateMultipartUploadReply(xml: Data(xml.utf8)).uploadID == "a&b<c>")
    }

    @Test func errorReplyIsNotAnUploadReply() {
        #expect(throws: S3Error.self) { try CreateMultipartUploadReply(xml: Data(Self.slowDown.utf8)) }
        #expect(S3ErrorReply(xml: Data(Self.initiate.utf8)) == nil)
    }

    /// Every prefix of both documents: truncated replies are refused, never half-read.
    @Test func truncatedReplies() {
        for document in [Self.initiate, Self.slowDown] {
            let bytes = Array(document.utf8)
            for length in 0..<bytes.count {
                let prefix = Data(bytes[..<length])
                #expect(throws: S3Error.self) { try CreateMultipartUploadReply(xml: prefix) }
                #expect(S3ErrorReply(xml: prefix) == nil)
            }
        }
    }

    @Test(arguments: [
        "", "garbage", "<", "<<<>>>", "<UploadId>x</UploadId", "</InitiateMultipartUploadResult>", "\u{0}\u{1}\u{2}",
        "<InitiateMultipartUploadResult><UploadId></UploadId></InitiateMultipartUploadResult>",
        "<InitiateMultipartUploadResult><UploadId>x</UploadId></InitiateMultipartUploadResult><Trailing/>",
        "<InitiateMultipartUploadResult><UploadId>x</Upload></InitiateMultipartUploadResult>",
        "<Error><Message>no code</Message></Error>", "<Error><Code></Code></Error>",
        "{\"Code\":\"SlowDown\"}", "<html><body>502 Bad Gateway</body></html>",
        String(repeating: "<a>", count: 100_000),
    ])
    func garbageIsRefused(_ text: String) {
        #expect(throws: S3Error.self) { try CreateMultipartUploadReply(xml: Data(text.utf8)) }
        #expect(S3ErrorReply(xml: Data(text.utf8)) == nil)
    }

    @Test func randomBytesAreRefused() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let bytes = (0..<Int.random(in: 0..<512, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(throws: S3Error.self) { try CreateMultipartUploadReply(xml: Data(bytes)) }
        }
    }

    @Test func entitiesAndDTDsAreRefused() {
        let billionLaughs = """
            <?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">\
            <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\
            <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>\
            <InitiateMultipartUploadResult><UploadId>&lol3;</UploadId></InitiateMultipartUploadResult>
            """
        let external = """
            <?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\
            <Error><Code>&x;</Code></Error>
            """
        #expect(throws: S3Error.self) { try CreateMultipartUploadReply(xml: Data(billionLaughs.utf8)) }
        #expect(S3ErrorReply(xml: Data(external.utf8)) == nil)
        // Comments are fine.
        #expect(S3ErrorReply(xml: Data("<!-- hi --><Error><Code>X</Code></Error>".utf8))?.code == "X")
    }

    @Test func oversizedRepliesAreRefused() {
        let padding = String(repeating: " ", count: S3XMLReply.maximumSize)
        #expect(S3ErrorReply(xml: Data(("<Error><Code>X</Code>" + padding + "</Error>").utf8)) == nil)
    }
}

/// Foundation's XMLParser trapped on a hostile reply in a full test run (Linux); the scanner
/// that replaced it must survive any mutation of a real reply.
@Suite("S3 replies: mutated")
struct S3ReplyMutationTests {
    @Test func twentyThousandMutationsOfARealReplyNeverTrap() {
        let reply = Array("""
            <?xml version="1.0" encoding="UTF-8"?>
            <InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k&amp;1</Key><UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>
            """.utf8)
        var generator = SystemRandomNumberGenerator()
        var parsed = 0
        for _ in 0..<20_000 {
            var bytes = reply
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let at = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &generator)
                case 1: bytes.remove(at: at)
                default: bytes.insert([UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "&"), UInt8(ascii: "/"), 0][Int.random(in: 0..<5, using: &generator)], at: at)
                }
                if bytes.isEmpty { break }
            }
            if (try? CreateMultipartUploadReply(xml: Data(bytes))) != nil { parsed += 1 }
            _ = S3ErrorReply(xml: Data(bytes))
        }
        #expect(parsed > 0, "some mutations (in text) still parse")
    }
}
