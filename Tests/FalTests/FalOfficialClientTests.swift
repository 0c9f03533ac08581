import FalSim
import Foundation
import Testing
import TestSupport

/// fal-sim driven by fal's own Python client (fal-client 1.0.3, installed by ops/test into
/// .build/python): if fal-sim drifts from what fal sends, fal's client breaks here first.
@Suite("fal-sim under fal's official Python client")
struct FalOfficialClientTests {
    /// `.build/python/bin/python3` (ops/test makes it), else a python3 on PATH that has fal_client.
    static func python() async throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let venv = root.appendingPathComponent(".build/python/bin/python3").path
        if FileManager.default.isExecutableFile(atPath: venv) { return venv }
        if (try? await FalSimTest.python(["-c", "import fal_client"]))?.status == 0 { return "python3" }
        Issue.record("This test needs fal's Python client: run ops/test (it makes .build/python with fal-client), or pip install fal-client")
        throw FalSimTestSkip()
    }

    @Test(.timeLimit(.minutes(1)))
    func submitStatusWithAndWithoutLogsResultStreamAndCancel() async throws {
        let python = try await Self.python()
        var configuration = FalSimConfiguration()
        // Long enough for the client's first status poll to find the request still queued, and
        // then running, on a loaded machine (at 200 ms and 300 ms it missed Queued twice in a day).
        configuration.queueDelay = .milliseconds(1500)
        configuration.runDelay = .milliseconds(1500)
        try await withFalSim(configuration: configuration) { sim in
            let base = await sim.baseURL.absoluteString
            let script = FalSimTest.pythonDirectory.appendingPathComponent("fal_client_drive.py").path
            let run = try await PackageExecutable.runToEnd(
                URL(fileURLWithPath: python == "python3" ? "/usr/bin/env" : python),
                arguments: (python == "python3" ? ["python3"] : []) + [script, base, configuration.key ?? "sim-key:sim-secret", "fal-ai/ltx-video-13b-distilled"],
                killAfter: .seconds(45)
            )
            #expect(run.status == 0, "fal-client failed against fal-sim: \(run.stderr.suffix(2000))")
            let seen = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
            #expect(seen["statuses"] as? [String] == ["Queued", "InProgress", "Completed"])
            #expect(seen["position"] as? Int == 0)
            // Logs: null when not asked for, a list when asked for.
            let logs = try #require(seen["logs"] as? [[String: Any]])
            #expect(logs.contains { $0["asked"] as? Bool == false && $0["type"] as? String == "NoneType" })
            #expect(logs.contains { $0["asked"] as? Bool == true && $0["type"] as? String == "list" })
            #expect((seen["result"] as? [String: Any])?["video"] != nil)
            #expect(seen["events"] as? [String] == ["Completed"])
            #expect(seen["cancel"] as? String == "ok")
            // What fal-sim recorded of the options the client sent.
            let record = try #require(await sim.requests().first { $0.id == seen["request_id"] as? String })
            #expect(record.options["x-fal-queue-priority"] == "low")
            // fal-client sends the deadline as a float ("60.0"): fal reads seconds, fractions allowed.
            #expect(record.options["x-fal-request-timeout"] == "60.0")
        }
    }
}
