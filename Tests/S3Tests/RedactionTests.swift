import Foundation
import Testing

@testable import S3

/// Secrets (the secret key, session tokens, signatures) never reach description, debugDescription or dump.
@Suite struct RedactionTests {
    static let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    static let token = "SESSION-TOKEN-VALUE"
    static let credentials = S3Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: secret, sessionToken: token)
    static let signer = AWSSigV4(credentials: credentials, region: "us-east-1")
    static let date = Date(timeIntervalSince1970: 1_369_353_600)

    static func texts(_ value: Any) -> [String] {
        var dumped = ""
        dump(value, to: &dumped)
        return [String(describing: value), String(reflecting: value), "\(value)", dumped]
    }

    static func expectHidden(_ value: Any, _ hidden: [String]) {
        for text in texts(value) {
            for secret in hidden {
                #expect(!text.contains(secret), "\(text)")
            }
        }
    }

    @Test func credentials() {
        Self.expectHidden(Self.credentials, [Self.secret, Self.token])
        #expect(Self.credentials.description.contains("AKIAIOSFODNN7EXAMPLE"))
        Self.expectHidden(Self.signer, [Self.secret, Self.token])
        Self.expectHidden([Self.credentials], [Self.secret, Self.token])
    }

    @Test func signedRequest() throws {
        let location = try S3Location(bucketURL: "https://examplebucket.s3.amazonaws.com")
        let request = try S3RequestBuilder(location: location).headObject(key: "test.txt")
        let signed = Self.signer.sign(request, at: Self.date)
        let signature = try #require(signed.headers["authorization"]?.split(separator: "=").last.map(String.init))
        Self.expectHidden(signed, [Self.secret, Self.token, signature])
        #expect(signed.description.hasPrefix("HEAD https://examplebucket.s3.amazonaws.com/test.txt ["))
    }

    @Test func presignedURL() throws {
        let url = try #require(URL(string: "https://examplebucket.s3.amazonaws.com/test.txt"))
        let presigned = try Self.signer.presign(url: url, expiresIn: 60, at: Self.date)
        let signature = try #require(presigned.url.absoluteString.split(separator: "=").last.map(String.init))
        Self.expectHidden(presigned, [Self.secret, Self.token, signature])
        #expect(presigned.description.contains("X-Amz-Signature=<redacted>"))
        // A request for a presigned URL hides the same parameters.
        Self.expectHidden(S3Request(method: "GET", url: presigned.url), [signature])
    }

    @Test func errorReplyDropsTheEchoedSignature() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message>\
            <SignatureProvided>f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41</SignatureProvided>\
            <StringToSign>AWS4-HMAC-SHA256</StringToSign><RequestId>R1</RequestId></Error>
            """
        let reply = try #require(S3ErrorReply(xml: Data(xml.utf8)))
        Self.expectHidden(reply, ["f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"])
        #expect(reply.description == "S3 SignatureDoesNotMatch: The request signature we calculated does not match (request R1)")
    }
}
