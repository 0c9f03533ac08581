import Crypto
import FalSim
import Foundation
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(1))) struct FalSimWebhookTests {
    static func verify(_ delivery: FalSimWebhookReceiver.Delivery, key: Curve25519.Signing.PublicKey) -> Bool {
        let h = delivery.headers
        guard let id = h["X-Fal-Webhook-Request-Id"], let user = h["X-Fal-Webhook-User-Id"],
            let timestamp = h["X-Fal-Webhook-Timestamp"], let signatureHex = h["X-Fal-Webhook-Signature"]
        else { return false }
        let digest = SHA256.hash(data: delivery.body).map { String(format: "%02x", $0) }.joined()
        let message = Data("\(id)\n\(user)\n\(timestamp)\n\(digest)".utf8)
        var signature: [UInt8] = []
        var index = signatureHex.startIndex
        while index < signatureHex.endIndex {
            let next = signatureHex.index(index, offsetBy: 2)
            signature.append(UInt8(signatureHex[index..<next], radix: 16)!)
            index = next
        }
        return key.isValidSignature(signature, for: message)
    }

    @Test func deliversFalsExactSignedBody() async throws {
        try await withWebhookReceiver { receiver in
            try await withFalSim(configuration: FalSimTest.configuration { $0.userID = "user-42" }) { sim in
                let submit = try await FalSimTest.submit(
                    sim, model: "fal-ai/ltx-video-13b-distilled", input: #"{"prompt": "crème brûlée 🍮"}"#, webhook: await receiver.url)
                let id = try #require(submit["request_id"]?.stringValue)
                let delivery = try #require(await receiver.waitFor(1).first)
                let record = await sim.waitForDeliveries(requestID: id, count: 1)
                #expect(record?.deliveries.first?.statusCode == 200)
                #expect(record?.webhookBody == String(decoding: delivery.body, as: UTF8.self))

                let text = String(decoding: delivery.body, as: UTF8.self)
                #expect(text.hasPrefix(#"{"error": null, "gateway_request_id": "\#(id)", "payload": {"prompt": "cr\u00e8me br\u00fbl\u00e9e \ud83c\udf6e", "seed": 17454220438242315174, "video": {"#))
                #expect(text.hasSuffix(#""request_id": "\#(id)", "status": "OK"}"#))
                #expect(delivery.headers["X-Fal-Webhook-Request-Id"] == id)
                #expect(delivery.headers["X-Fal-Webhook-User-Id"] == "user-42")
                let timestamp = try #require(Int(delivery.headers["X-Fal-Webhook-Timestamp"] ?? ""))
                #expect(abs(timestamp - Int(Date().timeIntervalSince1970)) < 60)
                #expect(delivery.headers["X-Fal-Webhook-Signature"]?.count == 128)
                #expect(Self.verify(delivery, key: sim.publicKey))

                // The JWKS key is the signing key.
                let jwks = try await FalSimTest.send(.GET, await sim.jwksURL.absoluteString, headers: [])
                let x = try #require(jwks.json?["keys"].flatMap { if case .array(let keys) = $0 { keys.first } else { nil } }?["x"]?.stringValue)
                var base64 = x.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
                while base64.count % 4 != 0 { base64 += "=" }
                #expect(Data(base64Encoded: base64) == sim.publicKey.rawRepresentation)
            }
        }
    }

    /// Checks the signature outside Swift with Python's `cryptography`.
    static func pythonVerifies(_ delivery: FalSimWebhookReceiver.Delivery, jwks: [UInt8]) async throws -> (Bool, String) {
        let headers = FalSimJSON.object(delivery.headers.filter { $0.key.hasPrefix("X-Fal-") }.mapValues(FalSimJSON.string))
        let jwksJSON = try FalSimJSON.parse(jwks)
        let testCase = FalSimJSON.object([
            "body_b64": .string(Data(delivery.body).base64EncodedString()), "headers": headers, "jwks": jwksJSON,
        ])
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("fal-sim-webhook-\(UUID().uuidString).json")
        try Data(testCase.pythonSerialized()).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let script = FalSimTest.pythonDirectory.appendingPathComponent("verify_webhook.py").path
        let run = try await FalSimTest.python([script, file.path])
        return (run.status == 0, String(decoding: run.output, as: UTF8.self) + run.error)
    }

    @Test func signatureVerifiesInPython() async throws {
        try await FalSimTest.requirePython(module: "cryptography")
        try await withWebhookReceiver { receiver in
            try await withFalSim(configuration: FalSimTest.configuration()) { sim in
                _ = try await FalSimTest.submit(sim, model: "fal-ai/mmaudio-v2", input: #"{"prompt": "x", "video_url": "https://x/v.mp4"}"#, webhook: await receiver.url)
                _ = try await FalSimTest.submit(sim, model: "fal-ai/mmaudio-v2", input: #"{"prompt": "x"}"#, webhook: await receiver.url, faults: "wrong-signature")
                let deliveries = await receiver.waitFor(2)
                let jwks = try await FalSimTest.send(.GET, await sim.jwksURL.absoluteString, headers: [])
                let good = try #require(deliveries.first { $0.json?["status"] == .string("OK") })
                let bad = try #require(deliveries.first { $0.json?["status"] == .string("ERROR") })
                let (goodOK, goodOutput) = try await Self.pythonVerifies(good, jwks: jwks.body)
                #expect(goodOK, "python rejected a good signature: \(goodOutput)")
                let (badOK, _) = try await Self.pythonVerifies(bad, jwks: jwks.body)
                #expect(!badOK, "python accepted a wrong-signature webhook")
            }
        }
    }

    @Test func failedDeliveriesAreRetriedOnTheScaledSchedule() async throws {
        try await withWebhookReceiver(statuses: [500, 503]) { receiver in
            try await withFalSim(configuration: FalSimTest.configuration()) { sim in
                let submit = try await FalSimTest.submit(sim, model: "fal-ai/mmaudio-v2/text-to-audio", input: #"{"prompt": "x"}"#, webhook: await receiver.url)
                let id = try #require(submit["request_id"]?.stringValue)
                let record = try #require(await sim.waitForDeliveries(requestID: id, count: 3))
                #expect(record.deliveries.map(\.statusCode) == [500, 503, 200])
                #expect(record.deliveries.map(\.attempt) == [1, 2, 3])
                let bodies = await receiver.waitFor(3).map(\.body)
                #expect(Set(bodies.map { $0 }).count == 1)
            }
        }
    }

    @Test func connectionErrorsAreRecordedAndRetriedTenTimes() async throws {
        // Bound and not listening, held for the test: a port only found free may be taken by a
        // parallel test's server meanwhile (one run got answers from whatever took it).
        let refusing = try RefusingPort()
        try await withFalSim(configuration: FalSimTest.configuration { $0.webhookRetryScale = 0.00001 }) { sim in
            let submit = try await FalSimTest.submit(sim, model: "fal-ai/x", input: "{}", webhook: "http://127.0.0.1:\(refusing.port)/hook")
            let id = try #require(submit["request_id"]?.stringValue)
            let record = try #require(await sim.waitForDeliveries(requestID: id, count: 10))
            #expect(record.deliveries.count == 10)
            #expect(record.deliveries.allSatisfy { $0.statusCode == nil && $0.error != nil })
        }
        withExtendedLifetime(refusing) {}
    }
}
