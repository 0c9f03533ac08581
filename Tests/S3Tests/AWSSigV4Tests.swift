import Foundation
import Testing

@testable import S3

@Suite struct AWSSigV4Tests {
    static let credentials = S3Credentials(accessKeyID: "AKIDCLAPPER", secretAccessKey: "s3cr3t/KEY+value")
    static let signer = AWSSigV4(credentials: credentials, region: "eu-west-1")
    static let date = Date(timeIntervalSince1970: 1_700_000_000)  // 20231114T221320Z

    static func request(_ url: String, body: String = "") throws -> S3Request {
        S3Request(method: "PUT", url: try #require(URL(string: url)), body: Data(body.utf8))
    }

    @Test func amzDate() {
        #expect(AmzDate(Self.date).timestamp == "20231114T221320Z")
        #expect(AmzDate(Self.date).dateStamp == "20231114")
        #expect(AmzDate(Date(timeIntervalSince1970: 0)).timestamp == "19700101T000000Z")
    }

    @Test func unsignedPayload() throws {
        let signed = Self.signer.sign(try Self.request("http://127.0.0.1:9000/b/k", body: "data"), payload: .unsigned, at: Self.date)
        #expect(signed.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD")
        let canonical = Self.signer.canonicalRequest(
            method: "PUT", url: signed.url, headers: signed.headers, payloadHash: AWSSigV4.unsignedPayload)
        #expect(canonical.text.hasSuffix("\nUNSIGNED-PAYLOAD"))
        #expect(signed.headers["host"] == "127.0.0.1:9000")
    }

    @Test func sessionTokenIsSentAndSigned() throws {
        let temporary = AWSSigV4(
            credentials: S3Credentials(accessKeyID: "ASIA1", secretAccessKey: "secret", sessionToken: "TOKEN/abc"),
            region: "us-east-1")
        let signed = temporary.sign(try Self.request("https://b.s3.amazonaws.com/k"), at: Self.date)
        #expect(signed.headers["x-amz-security-token"] == "TOKEN/abc")
        #expect(signed.headers["authorization"]?.contains("x-amz-date;x-amz-security-token,") == true)

        let url = try #require(URL(string: "https://b.s3.amazonaws.com/k"))
        let presigned = try temporary.presign(url: url, expiresIn: 60, at: Self.date)
        #expect(presigned.url.absoluteString.contains("&X-Amz-Security-Token=TOKEN%2Fabc&"))
    }

    @Test func signingTwiceReplacesTheAuthorization() throws {
        let once = Self.signer.sign(try Self.request("https://b.s3.amazonaws.com/k"), at: Self.date)
        let twice = Self.signer.sign(once, at: Self.date)
        #expect(once == twice)
    }

    @Test func callerHeaderNamesAreLowercasedNotDoubled() throws {
        var request = try Self.request("https://b.s3.amazonaws.com/k")
        request.headers = ["Host": "b.s3.amazonaws.com", "X-Amz-Date": "19990101T000000Z", "Authorization": "old", "Content-Type": "video/mp4"]
        let signed = Self.signer.sign(request, at: Self.date)
        #expect(Set(signed.headers.keys) == ["host", "x-amz-date", "x-amz-content-sha256", "content-type", "authorization"])
        #expect(signed.headers["x-amz-date"] == "20231114T221320Z")
        #expect(signed.headers["authorization"]?.contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date,") == true)
    }

    @Test func everyInputChangesTheSignature() throws {
        let base = Self.signer.sign(try Self.request("https://b.s3.amazonaws.com/k", body: "a"), at: Self.date)
        let variants = [
            Self.signer.sign(try Self.request("https://b.s3.amazonaws.com/k", body: "b"), at: Self.date),
            Self.signer.sign(try Self.request("https://b.s3.amazonaws.com/j", body: "a"), at: Self.date),
            Self.signer.sign(try Self.request("https://b.s3.amazonaws.com/k", body: "a"), at: Self.date + 1),
            AWSSigV4(credentials: Self.credentials, region: "eu-west-2")
                .sign(try Self.request("https://b.s3.amazonaws.com/k", body: "a"), at: Self.date),
            AWSSigV4(credentials: S3Credentials(accessKeyID: "AKIDCLAPPER", secretAccessKey: "s3cr3t/KEY+valuf"), region: "eu-west-1")
                .sign(try Self.request("https://b.s3.amazonaws.com/k", body: "a"), at: Self.date),
        ]
        for variant in variants {
            #expect(variant.headers["authorization"] != base.headers["authorization"])
        }
    }

    @Test func canonicalForms() {
        #expect(AWSSigV4.canonicalURI("") == "/")
        #expect(AWSSigV4.canonicalURI("/b/clapper/video/a%20b+c.mp4") == "/b/clapper/video/a%20b%2Bc.mp4")
        #expect(AWSSigV4.canonicalURI("/b/%C3%A9t%C3%A9") == "/b/%C3%A9t%C3%A9")  // encoded once, not twice
        #expect(AWSSigV4.canonicalURI("/b/%zz") == "/b/%25zz")  // a stray % is a literal one
        #expect(AWSSigV4.canonicalQuery(AWSSigV4.queryItems("uploads")) == "uploads=")
        #expect(AWSSigV4.canonicalQuery(AWSSigV4.queryItems("b=2&a=2&a=1&c")) == "a=1&a=2&b=2&c=")
        #expect(AWSSigV4.canonicalQuery(AWSSigV4.queryItems("k=a%2Fb c+d")) == "k=a%2Fb%20c%2Bd")
        #expect(AWSSigV4.trimmed("  a   b  c ") == "a b c")
    }

    @Test(arguments: [0, -1, 604_801, Int.max, Int.min])
    func presignRefusesLifetimesS3Refuses(_ seconds: Int) throws {
        let url = try #require(URL(string: "https://b.s3.amazonaws.com/k"))
        #expect(throws: S3Error(.invalidPresign, "X-Amz-Expires must be within 1...604800 seconds, not \(seconds)")) {
            try Self.signer.presign(url: url, expiresIn: seconds, at: Self.date)
        }
    }

    @Test func presignKeepsThePortAndTheKeyEncoding() throws {
        let location = try S3Location(bucketURL: "http://127.0.0.1:9000/media-bucket")
        let url = try location.objectURL(key: "clapper/video/a b.mp4")
        let presigned = try Self.signer.presign(url: url, expiresIn: 604_800, at: Self.date)
        #expect(presigned.url.absoluteString.hasPrefix("http://127.0.0.1:9000/media-bucket/clapper/video/a%20b.mp4?X-Amz-Algorithm="))
        #expect(presigned.url.absoluteString.contains("&X-Amz-Expires=604800&"))
    }
}
