import Fal
import Testing

@Suite struct FalWebhookTests {
    @Test func parsesPythonSerialisedOKBodyKeepingPayloadBytes() throws {
        let payload = #"{"prompt": "a cat", "seed": 17454220438242315174, "video": {"content_type": "video/mp4", "url": "https://sim/v.mp4"}}"#
        let body = json(#"{"error": null, "gateway_request_id": "g-1", "payload": "# + payload + #", "request_id": "r-1", "status": "OK"}"#)
        let webhook = try FalWebhook(parsing: body)
        #expect(webhook.requestID == "r-1")
        #expect(webhook.gatewayRequestID == "g-1")
        #expect(webhook.status == .ok)
        #expect(webhook.error == nil)
        #expect(webhook.payloadError == nil)
        #expect(webhook.payloadBytes == json(payload))
        #expect(webhook.payload.flatMap { RawJSON.string(atPath: "video.url", in: $0) } == "https://sim/v.mp4")
    }

    @Test func parsesErrorBodies() throws {
        let failed = try FalWebhook(parsing: json(#"{"error": "Invalid status code: 422", "payload": {"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}]}, "request_id": "r", "status": "ERROR"}"#))
        #expect(failed.status == .error)
        #expect(failed.error == "Invalid status code: 422")
        #expect(failed.payload != nil)
        let unserialisable = try FalWebhook(parsing: json(#"{"error": null, "payload": null, "payload_error": "Object of type bytes is not JSON serializable", "request_id": "r", "status": "OK"}"#))
        #expect(unserialisable.payload == nil)
        #expect(unserialisable.payloadError == "Object of type bytes is not JSON serializable")
        let odd = try FalWebhook(parsing: json(#"{"request_id": "r", "status": "WEIRD"}"#))
        #expect(odd.status == .other("WEIRD"))
    }

    @Test func rejectsBodiesWithoutIDOrStatus() {
        #expect(throws: RawJSONError.self) { try FalWebhook(parsing: json(#"{"status": "OK"}"#)) }
        #expect(throws: RawJSONError.self) { try FalWebhook(parsing: json(#"{"request_id": "r"}"#)) }
        #expect(throws: RawJSONError.self) { try FalWebhook(parsing: json(#"{"request_id": 5, "status": "OK"}"#)) }
        #expect(throws: RawJSONError.self) { try FalWebhook(parsing: json("not json")) }
    }
}
