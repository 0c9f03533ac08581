@testable import Clapper
import Foundation
import Testing
import TestSupport

/// `clapper.js` in headless Chromium: following a user's jobs through a server-side disconnect and
/// a token that expires mid-stream, renewing through `POST /v1/events/token`. Part of the browser
/// suite, which runs one browser at a time.
extension StatusPageBrowserTests {
    @Test(.timeLimit(.minutes(2)), .enabled(if: chromiumExecutable() != nil, "chromium is not installed: apt-get install -y chromium"))
    func followsThroughADisconnectAndATokenThatExpires() async throws {
        let chromium = try #require(chromiumExecutable())
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("clapper-js-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try await withGateway(.sim(SimSetup()) { $0.eventTokenLifetime = .seconds(6) }) { stack in
            let user = "browser-\(UUID().uuidString.prefix(8))"
            let bearer = TestUsers.token(user)
            let first = try #require(try await stack.gateway.send(.POST, "/v1/events/token", token: bearer).json["eventsUrl"] as? String)
            let browser = try Browser(executable: chromium, profile: directory.appendingPathComponent("profile"))
            do {
                let session = try await browser.openStatusPage(stack.gateway.baseURL + "/")
                // Load clapper.js from the gateway and follow the user's jobs.
                _ = try await browser.evaluate(session, """
                    new Promise((resolve, reject) => {
                      const script = document.createElement("script");
                      script.src = "/clapper.js";
                      script.onload = () => {
                        window.__seen = [];
                        window.__statuses = [];
                        window.__stream = Clapper.follow({
                          eventsUrl: \(Self.jsLiteral(first)),
                          renew: Clapper.userTokenRenewer(location.href, \(Self.jsLiteral(bearer))),
                          onChange: (view) => window.__seen.push(view.jobId + ":" + view.version + ":" + view.status),
                          onStatus: (state) => window.__statuses.push(state),
                        });
                        resolve(true);
                      };
                      script.onerror = () => reject(new Error("clapper.js did not load"));
                      document.head.appendChild(script);
                    })
                    """)
                // Waits (polling the page every 50 ms, at most 30 s) until `jobID` completed is seen.
                func seen(_ jobID: String) async throws -> [String: Any] {
                    let result = try await browser.evaluate(session, """
                        new Promise((resolve, reject) => {
                          const start = Date.now();
                          (function check() {
                            const s = window.__stream;
                            const state = { seen: window.__seen, statuses: window.__statuses, opens: s.opens, renewals: s.renewals, last: s.lastEventId };
                            if (window.__seen.some((e) => e.startsWith(\(Self.jsLiteral(jobID)) + ":") && e.endsWith(":completed"))) resolve(state);
                            else if (Date.now() - start > 30000) reject(new Error(JSON.stringify(state)));
                            else setTimeout(check, 50);
                          })();
                        })
                        """)
                    return try #require(result as? [String: Any])
                }
                func create(_ prompt: String) async throws -> String {
                    let created = try await stack.gateway.send(.POST, "/v1/jobs", token: bearer, body: jobBody(prompt, audio: false))
                    return try #require(created.json["jobId"] as? String, "\(created.text)")
                }

                let one = try await create("seen live")
                let afterOne = try await seen(one)
                // One open on a quiet machine; under load a first connect can fail and be retried.
                #expect((afterOne["opens"] as? Int ?? 0) >= 1)

                // The server drops the stream (as it drops one that fell behind): the client comes
                // back after its last event id and sees the next job.
                // Under load the stream may be between two connections right now (a retried first
                // connect, or the 6 s token already renewed: one full run found none): wait for it.
                var targets = stack.hub.targets(userID: user)
                let open = ContinuousClock(), openBy = open.now + .seconds(20)
                while targets.count != 1, open.now < openBy {
                    try await Task.sleep(for: .milliseconds(50))
                    targets = stack.hub.targets(userID: user)
                }
                #expect(targets.count == 1)
                for target in targets { target.end(.dropped) }
                let two = try await create("seen after a disconnect")
                let afterTwo = try await seen(two)
                // Reopened: by EventSource itself (the `retry:` goodbye, with Last-Event-ID) or by clapper.js.
                #expect((afterTwo["statuses"] as? [String] ?? []).filter { $0 == "open" }.count >= 2, "\(afterTwo)")

                // The 6 s token runs out mid-stream: token-expired, a renewal, and the stream goes on.
                let clock = ContinuousClock(), deadline = clock.now + .seconds(20)
                var renewals = 0
                while renewals < 1, clock.now < deadline {
                    renewals = try await browser.evaluate(session, "window.__stream.renewals") as? Int ?? 0
                    if renewals < 1 { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(renewals >= 1)
                let three = try await create("seen with a renewed token")
                let afterThree = try await seen(three)
                let statuses = afterThree["statuses"] as? [String] ?? []
                #expect(statuses.contains("renewing"), "\(statuses)")
                // Each job's versions arrive in order (a resumed user stream may repeat one: at least once).
                let events = afterThree["seen"] as? [String] ?? []
                for job in [one, two, three] {
                    let versions = events.filter { $0.hasPrefix(job + ":") }.compactMap { Int($0.split(separator: ":")[1]) }
                    #expect(!versions.isEmpty && versions == versions.sorted(), "\(job): \(versions)")
                }
                _ = try await browser.evaluate(session, "window.__stream.close(), true")
                await browser.close()
            } catch {
                await browser.close()
                throw error
            }
        }
    }

    /// A JavaScript string literal.
    static func jsLiteral(_ text: String) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: [text])) ?? Data("[\"\"]".utf8), as: UTF8.self).dropFirst().dropLast().description
    }
}
