import Testing

@testable import Clapper

@Suite struct WebhookTokenTests {
    let tokens = WebhookToken(secret: "webhook-secret")

    @Test func knownValue() {
        // Computed independently: Python hmac.new(b"webhook-secret", b"job1:video", sha256).hexdigest()
        #expect(tokens.make(jobID: "job1", kind: .video) == "d86bd23a83c0449aa1a5265782d5383db3dedf3841a3fe97f8e6e07c1c197416")
        #expect(tokens.make(jobID: "job1", kind: .audio) == "06738b154db0e98fd6e6b050dc196e90fc0d38d2fcedadb08752a1a95e9d2977")
        #expect(Hex.encode(Array("ab".utf8)) == "6162" && Hex.decode("6A62") == [0x6A, 0x62] && Hex.decode("6") == nil)
    }

    @Test func verifies() {
        let token = tokens.make(jobID: "job1", kind: .audio)
        #expect(tokens.verify(token: token, jobID: "job1", kind: .audio))
        #expect(tokens.verify(token: token.uppercased(), jobID: "job1", kind: .audio))
    }

    @Test func rejects() {
        let token = tokens.make(jobID: "job1", kind: .video)
        #expect(!tokens.verify(token: token, jobID: "job1", kind: .audio))
        #expect(!tokens.verify(token: token, jobID: "job2", kind: .video))
        #expect(!WebhookToken(secret: "other").verify(token: token, jobID: "job1", kind: .video))
        #expect(!tokens.verify(token: "", jobID: "job1", kind: .video))
        #expect(!tokens.verify(token: String(token.dropLast()), jobID: "job1", kind: .video))
        #expect(!tokens.verify(token: token + "00", jobID: "job1", kind: .video))
        #expect(!tokens.verify(token: String(repeating: "z", count: 64), jobID: "job1", kind: .video))
        var flipped = Array(token)
        flipped[10] = flipped[10] == "0" ? "1" : "0"
        #expect(!tokens.verify(token: String(flipped), jobID: "job1", kind: .video))
    }
}
