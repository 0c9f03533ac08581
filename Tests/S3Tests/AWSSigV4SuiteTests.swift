import Foundation
import Testing

@testable import S3

/// Vectors of AWS's generic "aws-sig-v4-test-suite" (service "service", us-east-1,
/// 20150830T123600Z). Their paths are `/`, the same whether encoded once (S3) or twice (the other
/// services), so S3's rule applies; `authorization` signs exactly the headers given.
@Suite struct AWSSigV4SuiteTests {
    static let signer = AWSSigV4(
        credentials: S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1", service: "service")
    static let date = Date(timeIntervalSince1970: 1_440_938_160)
    static let scope = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
    static let headers = ["Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"]

    static func authorization(_ method: String, _ url: String, headers: [String: String] = headers, body: String = "") throws
        -> String
    {
        let url = try #require(URL(string: url))
        return signer.authorization(
            method: method, url: url, headers: headers, payloadHash: AWSSigV4.sha256Hex(Data(body.utf8)), at: date)
    }

    @Test func getVanilla() throws {
        let url = try #require(URL(string: "https://example.amazonaws.com/"))
        let emptyHash = AWSSigV4.sha256Hex(Data())
        let canonical = Self.signer.canonicalRequest(method: "GET", url: url, headers: Self.headers, payloadHash: emptyHash)
        #expect(
            canonical.text
                == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\(emptyHash)")
        #expect(
            Self.signer.stringToSign(canonicalRequest: canonical.text, at: AmzDate(Self.date))
                == "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
                + "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
        #expect(
            try Self.authorization("GET", "https://example.amazonaws.com/")
                == "AWS4-HMAC-SHA256 \(Self.scope), SignedHeaders=host;x-amz-date, "
                + "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    }

    @Test func getVanillaQueryOrderKeyCase() throws {
        #expect(
            try Self.authorization("GET", "https://example.amazonaws.com/?Param2=value2&Param1=value1")
                == "AWS4-HMAC-SHA256 \(Self.scope), SignedHeaders=host;x-amz-date, "
                + "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
    }

    /// The suite's .creq for this case lists content-length, but its .sts and .authz were computed
    /// without it (SignedHeaders=content-type;host;x-amz-date): the signed headers are those.
    @Test func postXWWWFormURLEncoded() throws {
        var headers = Self.headers
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        #expect(
            try Self.authorization("POST", "https://example.amazonaws.com/", headers: headers, body: "Param1=value1")
                == "AWS4-HMAC-SHA256 \(Self.scope), SignedHeaders=content-type;host;x-amz-date, "
                + "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    }

    @Test func getVanillaQueryUnreserved() throws {
        let unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        #expect(
            try Self.authorization("GET", "https://example.amazonaws.com/?\(unreserved)=\(unreserved)")
                == "AWS4-HMAC-SHA256 \(Self.scope), SignedHeaders=host;x-amz-date, "
                + "Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197")
    }
}
