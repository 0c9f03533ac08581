import Foundation
import Testing

@testable import S3

/// The worked examples of AWS's S3 API reference: "Signature Calculations for the Authorization
/// Header: Transferring Payload in a Single Chunk" and "Authenticating Requests: Using Query
/// Parameters". Every expected value below is AWS's published one.
@Suite struct AWSSigV4S3ExampleTests {
    static let credentials = S3Credentials(
        accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    static let signer = AWSSigV4(credentials: credentials, region: "us-east-1")
    /// 20130524T000000Z
    static let date = Date(timeIntervalSince1970: 1_369_353_600)
    static let scope = "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
    static let emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    static func example(_ method: String, _ url: String, headers: [String: String] = [:], body: String = "") throws
        -> S3Request
    {
        let url = try #require(URL(string: url))
        return S3Request(method: method, url: url, headers: headers, body: Data(body.utf8))
    }

    /// The hash of the canonical request `sign` used: the last line of the string to sign.
    static func canonicalHash(_ signed: S3Request) throws -> String {
        let hash = try #require(signed.headers["x-amz-content-sha256"])
        let canonical = signer.canonicalRequest(method: signed.method, url: signed.url, headers: signed.headers, payloadHash: hash)
        return AWSSigV4.sha256Hex(Data(canonical.text.utf8))
    }

    @Test func signingKey() {
        let key = Self.signer.signingKey(on: AmzDate(Self.date))
        #expect(key.withUnsafeBytes { Array($0) }.hex == "dbb893acc010964918f1fd433add87c70e8b0db6be30c1fbeafefa5ec6ba8378")
    }

    @Test func getObjectWithRange() throws {
        let request = try Self.example("GET", "https://examplebucket.s3.amazonaws.com/test.txt", headers: ["range": "bytes=0-9"])
        let signed = Self.signer.sign(request, at: Self.date)
        #expect(signed.headers["x-amz-date"] == "20130524T000000Z")
        #expect(signed.headers["x-amz-content-sha256"] == Self.emptySHA256)
        #expect(signed.headers["host"] == "examplebucket.s3.amazonaws.com")
        #expect(try Self.canonicalHash(signed) == "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")
        #expect(
            signed.headers["authorization"]
                == "AWS4-HMAC-SHA256 \(Self.scope), SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func putObject() throws {
        // The key is `test$file.text`: `$` is encoded once, to %24.
        let request = try Self.example(
            "PUT", "https://examplebucket.s3.amazonaws.com/test$file.text",
            headers: ["date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"],
            body: "Welcome to Amazon S3.")
        let signed = Self.signer.sign(request, at: Self.date)
        #expect(signed.headers["x-amz-content-sha256"] == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        #expect(try Self.canonicalHash(signed) == "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d")
        #expect(
            signed.headers["authorization"]
                == "AWS4-HMAC-SHA256 \(Self.scope), "
                + "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
                + "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test func getBucketLifecycle() throws {
        let signed = Self.signer.sign(try Self.example("GET", "https://examplebucket.s3.amazonaws.com/?lifecycle"), at: Self.date)
        #expect(try Self.canonicalHash(signed) == "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca")
        #expect(
            signed.headers["authorization"]
                == "AWS4-HMAC-SHA256 \(Self.scope), SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                + "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    @Test func getBucketListObjects() throws {
        let signed = Self.signer.sign(
            try Self.example("GET", "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J"), at: Self.date)
        #expect(try Self.canonicalHash(signed) == "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7")
        #expect(
            signed.headers["authorization"]
                == "AWS4-HMAC-SHA256 \(Self.scope), SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                + "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    @Test func listObjectsQueryOrderDoesNotMatter() throws {
        let inOrder = Self.signer.sign(try Self.example("GET", "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J"), at: Self.date)
        let reversed = Self.signer.sign(try Self.example("GET", "https://examplebucket.s3.amazonaws.com/?prefix=J&max-keys=2"), at: Self.date)
        #expect(inOrder.headers["authorization"] == reversed.headers["authorization"])
    }

    @Test func presignedURL() throws {
        let url = try #require(URL(string: "https://examplebucket.s3.amazonaws.com/test.txt"))
        let presigned = try Self.signer.presign(url: url, expiresIn: 86400, at: Self.date)
        #expect(
            presigned.url.absoluteString
                == "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                + "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                + "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                + "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
        #expect(presigned.expiresIn == 86400)
    }
}
