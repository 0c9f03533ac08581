@testable import Clapper
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Redis
import Testing
import TestSupport

/// Traces over OTLP/HTTP, received by a small Python receiver (opentelemetry-proto from PyPI)
/// on loopback: one job's spans from the client's `traceparent` to the stream on the other
/// instance.
@Suite("Traces")
struct TracingTests {
    @Test(.timeLimit(.minutes(2)))
    func oneJobsSpansFromCreateToTheStreamOnAnotherInstance() async throws {
        try await withOTLPReceiver { receiver in
            let sim = SimSetup()
            let options = GatewayOptions(fal: .sim(sim.configuration), gateways: 2) {
                var otel = ClapperConfiguration.tracesOnly(endpoint: "http://127.0.0.1:\(receiver.port)/v1/traces")
                otel.serviceName = "clapper-\($0.httpPort)"
                otel.traces.batchSpanProcessor.scheduleDelay = .milliseconds(100)
                $0.tracing = otel
            }
            try await withGateway(options) { stack in
                let creator = stack.gateways[0], watcher = stack.gateways[1]
                let user = "trace-\(UUID().uuidString.prefix(8))"
                let token = TestUsers.token(user)
                let stream = try await SSEReader(client: stack.http, port: watcher.port, path: "/v1/events", headers: ["Authorization": "Bearer \(token)"])
                #expect(stream.status == 200)

                // The client's own trace and span.
                let clientTrace = Self.hex(16), clientSpan = Self.hex(8)
                let created = try await creator.send(
                    .POST, "/v1/jobs", token: token,
                    headers: ["traceparent": "00-\(clientTrace)-\(clientSpan)-01"],
                    body: jobBody("a traced job", merge: false)
                )
                let jobID = try #require(created.json["jobId"] as? String, "\(created.status) \(created.text)")
                while let frame = try await stream.nextEvent() {
                    guard let data = frame.data, let view = (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any],
                          view["jobId"] as? String == jobID, isFinished(view) else { continue }
                    #expect(view["status"] as? String == "completed")
                    break
                }

                // Spans arrive in batches: ask the receiver until the whole chain is there.
                var chain: Chain?
                var spans: [ReceivedSpan] = []
                let clock = ContinuousClock(), deadline = clock.now + .seconds(30)
                while chain == nil, clock.now < deadline {
                    spans = try await receiver.spans()
                    chain = Chain(spans, jobID: jobID)
                    if chain == nil { try await Task.sleep(for: .milliseconds(100)) }
                }
                let all = String(decoding: try await receiver.spansJSON(), as: UTF8.self)
                let found = try #require(chain, "incomplete chain in \(spans.count) spans: \(all)")

                // create: a server span in the client's trace, under the client's span.
                #expect(found.create.traceId == clientTrace)
                #expect(found.create.parentSpanId == clientSpan)
                #expect(found.create.kind == 2)
                #expect(found.create.service == "clapper-\(creator.port)")
                for (task, submit) in found.submits {
                    // Each submit: a client span under create, naming fal's request.
                    #expect(submit.traceId == clientTrace, "\(task)")
                    #expect(submit.parentSpanId == found.create.spanId, "\(task)")
                    #expect(submit.kind == 3, "\(task)")
                    #expect(submit.attributes["fal.request_id"] != nil, "\(task)")
                    // Its webhook's span links to it (fal sends no trace context).
                    let webhook = try #require(found.webhooks[task], "\(task)")
                    #expect(webhook.links.contains { $0.traceId == clientTrace && $0.spanId == submit.spanId }, "\(task): \(webhook.links)")
                }
                // webhook -> apply -> publish on the instance fal called, delivery on the other.
                #expect(found.apply.parentSpanId == found.webhooks["video"]?.spanId)
                #expect(found.publish.parentSpanId == found.apply.spanId)
                #expect(found.deliver.traceId == found.publish.traceId)
                #expect(found.deliver.parentSpanId == found.publish.spanId)
                #expect(found.deliver.service == "clapper-\(watcher.port)")
                #expect(found.deliver.attributes["clapper.streams"] as? Int ?? 0 >= 1)
                #expect(found.webhookRequest.name.hasPrefix("POST /v1/webhooks/fal/"))
                #expect(found.webhookRequest.kind == 2)

                // No secret in any span: the webhook URL's token, fal's key, the user's token.
                let text = String(decoding: try await receiver.spansJSON(), as: UTF8.self)
                #expect(!text.contains("token="))
                #expect(!text.contains("sim-secret"))
                #expect(!text.contains(token))
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func offWritesNoTraceContextAnywhere() async throws {
        try await withGateway(.sim(SimSetup())) { stack in
            #expect(stack.configuration.tracing == nil)
            let user = "untraced-\(UUID().uuidString.prefix(8))"
            let created = try await stack.gateway.send(
                .POST, "/v1/jobs", token: TestUsers.token(user),
                headers: ["traceparent": "00-\(Self.hex(16))-\(Self.hex(8))-01"], body: jobBody("untraced", merge: false)
            )
            let jobID = try #require(created.json["jobId"] as? String)
            _ = try await waitForJob(jobID, gateway: stack.gateway, redis: stack.server, token: TestUsers.token(user)) { isFinished($0) }
            // Neither the job nor its tasks keep a trace context.
            let repository = stack.jobs.repository
            let doc = try #require(try await repository.redis.send(RedisCommand("HGET", repository.keys.job(jobID), "doc")).bytes)
            #expect(!String(decoding: doc, as: UTF8.self).contains("traceContext"))
        }
    }

    static func hex(_ bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }
}

/// A span as the receiver reports it.
struct ReceivedSpan: Sendable {
    var service: String
    var name: String
    var kind: Int
    var traceId: String
    var spanId: String
    var parentSpanId: String
    var attributes: [String: any Sendable]
    var links: [(traceId: String, spanId: String)]

    init?(_ object: [String: Any]) {
        guard let name = object["name"] as? String, let traceId = object["traceId"] as? String,
              let spanId = object["spanId"] as? String else { return nil }
        self.service = object["service"] as? String ?? ""
        self.name = name
        self.kind = object["kind"] as? Int ?? 0
        self.traceId = traceId
        self.spanId = spanId
        self.parentSpanId = object["parentSpanId"] as? String ?? ""
        var attributes: [String: any Sendable] = [:]
        for (key, value) in object["attributes"] as? [String: Any] ?? [:] {
            if let value = value as? String { attributes[key] = value } else if let value = value as? Int { attributes[key] = value }
        }
        self.attributes = attributes
        self.links = (object["links"] as? [[String: String]] ?? []).compactMap { link in
            guard let trace = link["traceId"], let span = link["spanId"] else { return nil }
            return (trace, span)
        }
    }

    func belongs(to jobID: String) -> Bool { attributes["clapper.job_id"] as? String == jobID }
}

/// One job's spans, once every link of the chain has arrived.
struct Chain {
    var create: ReceivedSpan
    var submits: [String: ReceivedSpan]
    var webhooks: [String: ReceivedSpan]
    var webhookRequest: ReceivedSpan
    var apply: ReceivedSpan
    var publish: ReceivedSpan
    var deliver: ReceivedSpan

    init?(_ spans: [ReceivedSpan], jobID: String) {
        let byID = Dictionary(spans.map { ($0.spanId, $0) }, uniquingKeysWith: { first, _ in first })
        var submits: [String: ReceivedSpan] = [:], webhooks: [String: ReceivedSpan] = [:]
        for span in spans where span.belongs(to: jobID) {
            guard let task = span.attributes["clapper.task"] as? String else { continue }
            if span.name == "fal.submit" { submits[task] = span }
            if span.name == "fal.webhook" { webhooks[task] = span }
        }
        guard let video = webhooks["video"], submits.keys.sorted() == ["audio", "video"], webhooks.keys.sorted() == ["audio", "video"],
              let create = submits["video"].flatMap({ byID[$0.parentSpanId] }),
              let webhookRequest = byID[video.parentSpanId],
              let apply = spans.first(where: { $0.name == "job.apply" && $0.parentSpanId == video.spanId }),
              // The written one: a compare-and-set lost to the other task's webhook is tried again.
              let publish = spans.first(where: { $0.name == "job.publish" && $0.parentSpanId == apply.spanId && $0.attributes["clapper.written"] as? String == "true" }),
              let deliver = spans.first(where: { $0.name == "sse.deliver" && $0.parentSpanId == publish.spanId })
        else { return nil }
        self.create = create
        self.submits = submits
        self.webhooks = webhooks
        self.webhookRequest = webhookRequest
        self.apply = apply
        self.publish = publish
        self.deliver = deliver
    }
}

/// `Tests/ClapperTests/python/otlp_receiver.py` under the venv ops/test makes, on a port it picked.
struct OTLPReceiver: Sendable {
    let port: Int

    func spansJSON() async throws -> [UInt8] {
        let url = try #require(URL(string: "http://127.0.0.1:\(port)/spans"))
        let (data, _) = try await URLSession.shared.data(from: url)
        return Array(data)
    }

    func spans() async throws -> [ReceivedSpan] {
        let objects = try JSONSerialization.jsonObject(with: Data(try await spansJSON())) as? [[String: Any]] ?? []
        return objects.compactMap(ReceivedSpan.init)
    }
}

func withOTLPReceiver<T: Sendable>(_ body: (OTLPReceiver) async throws -> T) async throws -> T {
    try await withPythonService("otlp_receiver.py") { line in
        let port = try #require(Int(line), "the receiver said: \(line)")
        return try await body(OTLPReceiver(port: port))
    }
}
