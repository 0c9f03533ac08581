@testable import Clapper
import Foundation
import Testing
import TestSupport

/// Stream tokens for browsers: short-lived, renewed through `POST /v1/events/token`, and a stream
/// whose token expires says `token-expired` instead of leaving the client to a bare 401.
@Suite("Event tokens that renew")
struct EventTokenRenewalTests {
    @Test(.timeLimit(.minutes(1)))
    func aStreamWhoseTokenExpiresSaysSoAndARenewedTokenResumesIt() async throws {
        try await withGateway(.sim(SimSetup()) { $0.eventTokenLifetime = .seconds(6) }) { stack in
            let user = "renew-\(UUID().uuidString.prefix(8))"
            let bearer = TestUsers.token(user)
            let issued = try await stack.gateway.send(.POST, "/v1/events/token", token: bearer)
            #expect(issued.status == 200)
            let eventsURL = try #require((issued.json["eventsUrl"] as? String).flatMap(Self.path))
            let expiresAt = try #require((issued.json["expiresAt"] as? String).flatMap { try? Date($0, strategy: .iso8601) })
            #expect(abs(expiresAt.timeIntervalSinceNow - 6) < 2)

            // A browser's EventSource: the token in the URL, no Authorization header.
            let stream = try await stack.open(eventsURL)
            #expect(stream.status == 200)
            let created = try await stack.gateway.send(.POST, "/v1/jobs", token: bearer, body: jobBody("a job under a short token", audio: false))
            let jobID = try #require(created.json["jobId"] as? String)
            var lastID: String?
            var expired = false
            while let frame = try await stream.nextEvent() {
                if frame.event == "token-expired" {
                    expired = true
                    #expect(frame.data?.contains("/v1/events/token") == true)
                    break
                }
                if let id = frame.id { lastID = id }
            }
            #expect(expired, "the stream ended without saying its token expired")
            #expect(try await stream.next().map { $0.retry != nil } ?? true, "a retry hint, or the end")
            #expect(Date() >= expiresAt.addingTimeInterval(-1))
            // The old token no longer opens anything: 401, as before.
            let stale = try await stack.gateway.send(.GET, eventsURL)
            #expect(stale.status == 401 && stale.errorCode == "invalid_token")
            // A new one resumes after the last change seen.
            let renewed = try await stack.gateway.send(.POST, "/v1/events/token", token: bearer)
            let again = try await stack.open(try #require((renewed.json["eventsUrl"] as? String).flatMap(Self.path)), headers: lastID.map { ["Last-Event-ID": $0] } ?? [:])
            #expect(again.status == 200)
            // The job's own eventsUrl comes with every read of the job, freshly signed.
            let read = try await stack.gateway.send(.GET, "/v1/jobs/\(jobID)", token: bearer)
            let jobEvents = try #require(read.json["eventsUrl"] as? String)
            #expect(jobEvents.contains("/v1/jobs/\(jobID)/events?token="))
            let jobStream = try await stack.open(try #require(Self.path(jobEvents)))
            #expect(jobStream.status == 200)
        }
    }

    /// The path and query of an absolute URL the gateway handed out.
    static func path(_ url: String) -> String? {
        url.range(of: "/v1/").map { String(url[$0.lowerBound...]) }
    }

    @Test func newTokensNeedAUser() async throws {
        try await withGateway(.noFal()) { stack in
            let refused = try await stack.gateway.send(.POST, "/v1/events/token")
            #expect(refused.status == 401)
        }
    }
}
