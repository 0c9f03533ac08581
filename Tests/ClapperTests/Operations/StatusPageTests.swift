import AsyncHTTPClient
@testable import Clapper
import FalSim
import Foundation
import NIOHTTP1
import Testing
import TestSupport

@Suite("Status page, CORS, and events of real jobs")
struct StatusPageTests {
    @Test func thePageAndItsAssetsAreServed() async throws {
        try await withRouterClient { client, _ in
            for (path, type, needle) in [("/", "text/html", "create-job"), ("/status.js", "text/javascript", "Clapper.follow"), ("/clapper.js", "text/javascript", "EventSource"), ("/status.css", "text/css", ".job-card")] {
                let reply = try await client.send(.GET, path)
                #expect(reply.status == 200, "\(path)")
                #expect(reply.headers.first(name: "content-type")?.hasPrefix(type) == true, "\(path)")
                #expect(reply.headers.first(name: "content-security-policy")?.contains("script-src 'self'") == true)
                #expect(reply.text.contains(needle), "\(path)")
            }
            // The scripts never write server data as HTML.
            for path in ["/status.js", "/clapper.js"] {
                let script = try await client.send(.GET, path).text
                #expect(!script.contains("innerHTML") && !script.contains("outerHTML") && !script.contains("insertAdjacentHTML") && !script.contains("document.write"), "\(path)")
            }
        }
    }

    @Test func corsAnswersPreflightsAndExposesLastEventID() async throws {
        try await withGateway(.noFal({ $0.corsOrigins = ["https://app.example"] })) { context in
            let job = uniqueID()
            try await context.jobs.create(job, user: "rita")
            let preflight = try await send(context, "/v1/jobs/\(job)/events", method: .OPTIONS, headers: [
                "Origin": "https://app.example", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "last-event-id, authorization",
            ])
            #expect(preflight.status == 204)
            #expect(preflight.headers["access-control-allow-origin"] == "https://app.example")
            #expect(preflight.headers["access-control-allow-headers"]?.contains("Last-Event-ID") == true)
            #expect(preflight.headers["access-control-allow-headers"]?.contains("Authorization") == true)
            #expect(preflight.headers["access-control-allow-methods"]?.contains("GET") == true)
            let postPreflight = try await send(context, "/v1/jobs", method: .OPTIONS, headers: ["Origin": "https://app.example", "Access-Control-Request-Method": "POST"])
            #expect(postPreflight.status == 204)
            #expect(postPreflight.headers["access-control-allow-methods"]?.contains("POST") == true)
            let stranger = try await send(context, "/v1/jobs", method: .OPTIONS, headers: ["Origin": "https://evil.example", "Access-Control-Request-Method": "POST"])
            #expect(stranger.headers["access-control-allow-origin"] == nil)

            let stream = try await context.open(context.jobs.jobPath(job, user: "rita"), headers: ["Origin": "https://app.example"])
            #expect(stream.header("access-control-allow-origin") == "https://app.example")
            #expect(stream.header("access-control-expose-headers")?.contains("Last-Event-ID") == true)
            let error = try await send(context, "/v1/jobs/\(job)/events", headers: ["Origin": "https://app.example"])
            #expect(error.status == 401)
            #expect(error.headers["access-control-allow-origin"] == "https://app.example")
        }
    }

    /// POST /v1/jobs on the whole stack (fal-sim), then its `eventsUrl` until `done`.
    @Test(.timeLimit(.minutes(1)))
    func aCreatedJobStreamsToDoneWithBothPlayersURLs() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway
            let prompt = "a lighthouse\nin fog\r\u{2028}at night \(UUID())"
            print("e2e: gateway up on \(gateway.port)")
            let created = try await gateway.send(.POST, "/v1/jobs", token: TestUsers.token("sam"), body: jobBody(prompt))
            print("e2e: created \(created.status)")
            #expect(created.status == 202)
            let eventsURL = try #require(created.json["eventsUrl"] as? String)
            let url = try #require(URL(string: eventsURL))
            let path = url.path + "?" + (url.query ?? "")
            let http = makeHTTPClient()
            let stream = try await SSEReader(client: http, port: gateway.port, path: path)
            #expect(stream.status == 200)
            var versions: [Int] = []
            var last: [String: Any] = [:]
            var sawDone = false
            while let event = try await stream.nextEvent() {
                if event.event == "done" {
                    sawDone = true
                    break
                }
                #expect(event.dataLines == 1)
                last = try #require(try JSONSerialization.jsonObject(with: Data((event.data ?? "").utf8)) as? [String: Any])
                print("e2e: \(event.event ?? "?") v\(last["version"] ?? "?") \(last["status"] ?? "?") video \(last["videoStatus"] ?? "?") audio \(last["audioStatus"] ?? "?")")
                versions.append(last["version"] as? Int ?? -1)
            }
            #expect(sawDone)
            #expect(versions == Array((versions.first ?? 1)...(versions.last ?? 0)), "versions \(versions)")
            #expect(last["prompt"] as? String == prompt)
            #expect(last["status"] as? String == "completed")
            #expect(last["videoUrl"] is String)
            #expect(last["audioUrl"] is String)
            try await http.shutdown()
        }
    }

    struct Reply {
        let status: Int
        let headers: [String: String]
        let text: String
    }

    func send(_ context: TestStack, _ path: String, method: HTTPMethod = .GET, headers: [String: String] = [:]) async throws -> Reply {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(context.port)\(path)")
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await context.http.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        var fields: [String: String] = [:]
        for header in response.headers { fields[header.name.lowercased()] = header.value }
        return Reply(status: Int(response.status.code), headers: fields, text: String(buffer: body))
    }
}
