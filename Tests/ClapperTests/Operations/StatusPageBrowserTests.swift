import Clapper
import FalSim
import Foundation
import Testing
import TestSupport

/// The status page in a real browser: headless Chromium (Debian's `chromium` package) driven over
/// the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3 in, fd 4 out, NUL-separated
/// JSON), against a gateway running with fal-sim in dev mode. Skipped when Chromium is missing
/// (`apt-get install -y chromium`).
/// One browser at a time: each Chromium takes much of a 2-core machine.
@Suite("Status page in headless Chromium", .serialized)
struct StatusPageBrowserTests {
    /// The card plays the merged file (video with its sound) in the video player. With
    /// `audioFails`, fal-sim fails the audio: the card shows the video player (the video alone)
    /// and "Audio generation failed" with the error, and no audio player.
    @Test(.timeLimit(.minutes(1)), .enabled(if: chromiumExecutable() != nil, "chromium is not installed: apt-get install -y chromium"), arguments: [false, true])
    func creatingAJobWithAudioShowsThePlayers(audioFails: Bool) async throws {
        let chromium = try #require(chromiumExecutable())
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("clapper-status-page-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try await withGateway(GatewayOptions(configure: { $0.devMode = true })) { stack in
            let gateway = stack.gateway, sim = stack.sim
            if audioFails {
                try await sim.addFaultRule(FalSimFaultRule(model: "cassetteai/sound-effects-generator", faults: ["fail"]))
            }
            let browser = try Browser(executable: chromium, profile: directory.appendingPathComponent("profile"))
            do {
                let session = try await browser.openStatusPage(gateway.baseURL + "/")

                // Fill the form as a person would and submit it.
                _ = try await browser.evaluate(session, """
                    (() => {
                      document.getElementById("prompt").value = "a paper boat on a rainy street\\n<b>not bold</b>";
                      document.getElementById("duration").value = "2";
                      document.getElementById("audio").checked = true;
                      document.getElementById("tier").value = "fast";
                      document.getElementById("tier").dispatchEvent(new Event("change"));
                      document.getElementById("mode").value = "parallel";
                      document.getElementById("submit").click();
                      return true;
                    })()
                    """)

                // Wait (on DOM changes, not a timer) for the card to show both players.
                let result = try await browser.evaluate(session, """
                    new Promise((resolve, reject) => {
                      const state = () => {
                        const card = document.querySelector(".job-card");
                        const video = card && card.querySelector("video.job-video");
                        const audio = card && card.querySelector("audio.job-audio");
                        const status = card && card.querySelector(".badge.status").textContent;
                        const failure = card && card.querySelector(".audio-failed");
                        return { video: video ? video.src : null, audio: audio ? audio.src : null, status,
                                 merged: video ? video.dataset.merged : null, audioHidden: audio ? audio.hidden : null,
                                 audioFailure: failure && !failure.hidden ? failure.textContent : null,
                                 prompt: card ? card.querySelector(".prompt").textContent : null,
                                 bold: card ? card.querySelectorAll("b").length : -1,
                                 formStatus: document.getElementById("form-status").textContent };
                      };
                      const audioFails = \(audioFails);
                      const done = () => { const s = state(); return s.video && (audioFails ? s.audioFailure : s.merged === "true") && s.status === "completed"; };
                      if (done()) return resolve(state());
                      const observer = new MutationObserver(() => { if (done()) { observer.disconnect(); resolve(state()); } });
                      observer.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
                      setTimeout(() => { observer.disconnect(); reject(new Error("players did not appear: " + JSON.stringify(state()))); }, 40000);
                    })
                    """)
                let state = try #require(result as? [String: Any])
                #expect((state["video"] as? String)?.hasPrefix("http") == true)
                if audioFails {
                    #expect(state["audio"] is NSNull)
                    #expect(state["merged"] as? String == "false")
                    #expect((state["audioFailure"] as? String)?.hasPrefix("Audio generation failed: ") == true)
                } else {
                    // The merged file plays in the video player; the separate audio player is hidden.
                    #expect(state["merged"] as? String == "true")
                    #expect(state["audio"] is NSNull || state["audioHidden"] as? Bool == true, "no separate audio player shown")
                    #expect(state["audioFailure"] is NSNull)
                }
                #expect(state["status"] as? String == "completed")
                #expect(state["prompt"] as? String == "a paper boat on a rainy street\n<b>not bold</b>")
                #expect(state["bold"] as? Int == 0)

                let shot = try await browser.call("Page.captureScreenshot", ["format": "png", "captureBeyondViewport": true], session: session)
                let png = try #require((shot["data"] as? String).flatMap { Data(base64Encoded: $0) })
                let file = directory.appendingPathComponent(audioFails ? "status-page-audio-failed.png" : "status-page.png")
                try png.write(to: file)
                #expect(png.count > 1000)
                print("status page screenshot: \(file.path)")
                await browser.close()
            } catch {
                await browser.close()
                throw error
            }
        }
    }
}

extension StatusPageBrowserTests {
    /// A job held running at fal (fal-sim `hold-run`, progress polled every 100 ms): its card shows
    /// the last line fal logged, as text, and the line goes once the job is done.
    @Test(.timeLimit(.minutes(1)), .enabled(if: chromiumExecutable() != nil, "chromium is not installed: apt-get install -y chromium"))
    func aRunningJobShowsWhatFalLogs() async throws {
        let chromium = try #require(chromiumExecutable())
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("clapper-status-progress-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try await withGateway(GatewayOptions(configure: {
            $0.devMode = true
            ReconcileSetup.on(&$0)
            $0.progress = ProgressPolicy(interval: .milliseconds(100), maxInterval: .milliseconds(400))
        })) { stack in
            let marker = "held boat \(UUID().uuidString.prefix(6))"
            try await stack.sim.addFaultRule(FalSimFaultRule(promptContains: marker, faults: ["hold-run"]))
            let browser = try Browser(executable: chromium, profile: directory.appendingPathComponent("profile"))
            do {
                let session = try await browser.openStatusPage(stack.gateway.baseURL + "/")
                _ = try await browser.evaluate(session, """
                    (() => {
                      document.getElementById("prompt").value = "\(marker)";
                      document.getElementById("duration").value = "2";
                      document.getElementById("audio").checked = false;
                      document.getElementById("submit").click();
                      return true;
                    })()
                    """)
                // Waits on DOM changes for the card's progress line to satisfy `condition`.
                func progress(until condition: String) async throws -> [String: Any] {
                    let result = try await browser.evaluate(session, """
                        new Promise((resolve, reject) => {
                          const state = () => {
                            const card = document.querySelector(".job-card");
                            const line = card && card.querySelector(".progress");
                            return { text: line ? line.textContent : null, hidden: line ? line.hidden : null,
                                     status: card ? card.querySelector(".badge.status").textContent : null,
                                     tags: line ? line.children.length : -1 };
                          };
                          const done = () => { const s = state(); return \(condition); };
                          if (done()) return resolve(state());
                          const observer = new MutationObserver(() => { if (done()) { observer.disconnect(); resolve(state()); } });
                          observer.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
                          setTimeout(() => { observer.disconnect(); reject(new Error("progress: " + JSON.stringify(state()))); }, 30000);
                        })
                        """)
                    return try #require(result as? [String: Any])
                }
                // fal-sim logs a line at the start and one per quarter of its run: the last one shows.
                let running = try await progress(until: "s.text && s.text.startsWith('Video: fal-sim: ')")
                #expect(running["status"] as? String == "running", "\(running)")
                #expect(running["hidden"] as? Bool == false)
                #expect(running["tags"] as? Int == 0, "fal's line is text, not markup")
                #expect(await stack.sim.releaseHeldRuns().count == 1)
                let finished = try await progress(until: "s.status === 'completed'")
                #expect(finished["hidden"] as? Bool == true, "no progress line once done: \(finished)")
                await browser.close()
            } catch {
                await browser.close()
                throw error
            }
        }
    }
}

extension Browser {
    /// Opens `url` in a new tab and waits until the status page's form is there (retried while
    /// the first document is replaced); returns the tab's session.
    func openStatusPage(_ url: String) async throws -> String {
        let target = try await call("Target.createTarget", ["url": url])
        let targetID = try #require(target["targetId"] as? String)
        let attached = try await call("Target.attachToTarget", ["targetId": targetID, "flatten": true])
        let session = try #require(attached["sessionId"] as? String)
        _ = try await evaluate(session, retries: 50, """
            new Promise((resolve, reject) => {
              const start = Date.now();
              (function check() {
                if (document.readyState === "complete" && document.getElementById("create-job")) resolve(true);
                else if (Date.now() - start > 10000) reject(new Error("no form"));
                else setTimeout(check, 20);
              })();
            })
            """)
        return session
    }
}

func chromiumExecutable() -> String? {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// Headless Chromium with a DevTools-protocol connection on a pipe.
///
/// `@unchecked Sendable` proof: the mutable state (`nextID`, `pending`, `buffer`) is only touched
/// while `lock` is held; the process, pipes and `exited` are set in `init` and only read afterwards.
final class Browser: @unchecked Sendable {
    private let process = SpawnedProcess()
    private let input = Pipe()
    private let output = Pipe()
    private let lock = NSLock()
    private var nextID = 0
    /// Each waiting call, resumed with the raw JSON of its `result`.
    private var pending: [Int: CheckedContinuation<Data, any Error>] = [:]
    private var buffer = Data()
    /// Ends when the browser process has exited.
    private let exited: AsyncStream<Void>

    struct ProtocolError: Error, CustomStringConvertible {
        let description: String
    }

    init(executable: String, profile: URL) throws {
        let arguments = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--mute-audio", "--window-size=1100,1300", "--remote-debugging-pipe",
            "--user-data-dir=\(profile.path)", "about:blank",
        ]
        let quoted = ([executable] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        // fd 3 <- our input pipe, fd 4 -> our output pipe; Chromium's own output is discarded.
        process.arguments = ["-c", "exec \(quoted) 3<&0 4>&1 </dev/null >/dev/null 2>/dev/null"]
        process.standardInput = input
        process.standardOutput = output
        let (exited, exit) = AsyncStream.makeStream(of: Void.self)
        self.exited = exited
        process.terminationHandler = { _ in
            exit.yield()
            exit.finish()
        }
        try process.run()
        // Blocking reads on a thread of their own, not a dispatch read source: closing a pipe
        // under a readability handler crashed libdispatch's manager thread on Linux.
        let reader = output.fileHandleForReading
        Thread.detachNewThread { [self] in
            while true {
                let data = reader.availableData
                if data.isEmpty {
                    failAll(ProtocolError(description: "the browser closed its pipe"))
                    return
                }
                received(data)
            }
        }
    }

    /// Calls a DevTools method (on a page when `session` is given) and returns its `result`.
    func call(_ method: String, _ params: [String: Any] = [:], session: String? = nil) async throws -> [String: Any] {
        let result = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Data, any Error>) in
            let message: Data
            lock.lock()
            nextID += 1
            let id = nextID
            var object: [String: Any] = ["id": id, "method": method, "params": params]
            if let session { object["sessionId"] = session }
            do {
                message = try JSONSerialization.data(withJSONObject: object)
            } catch {
                lock.unlock()
                continuation.resume(throwing: error)
                return
            }
            pending[id] = continuation
            lock.unlock()
            input.fileHandleForWriting.write(message + Data([0]))
        }
        return (try JSONSerialization.jsonObject(with: result) as? [String: Any]) ?? [:]
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    func evaluate(_ session: String, retries: Int = 0, _ expression: String) async throws -> Any? {
        var attempt = 0
        while true {
            let result: [String: Any]
            do {
                result = try await call("Runtime.evaluate", ["expression": expression, "awaitPromise": true, "returnByValue": true], session: session)
            } catch let error as ProtocolError where attempt < retries {
                // "Execution context was destroyed": the document was replaced under the script.
                _ = error
                attempt += 1
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            if let exception = result["exceptionDetails"] as? [String: Any] {
                if attempt < retries {
                    attempt += 1
                    try await Task.sleep(for: .milliseconds(100))
                    continue
                }
                let text = ((exception["exception"] as? [String: Any])?["description"] as? String) ?? "\(exception)"
                throw ProtocolError(description: "page script failed: \(text)")
            }
            return (result["result"] as? [String: Any])?["value"]
        }
    }

    func close() async {
        _ = try? await call("Browser.close")
        if process.isRunning { process.terminate() }
        for await _ in exited {}
    }

    private func received(_ data: Data) {
        var messages: [Data] = []
        lock.lock()
        buffer.append(data)
        while let end = buffer.firstIndex(of: 0) {
            messages.append(buffer[buffer.startIndex..<end])
            buffer = Data(buffer[(end + 1)...])
        }
        lock.unlock()
        for message in messages {
            guard let object = (try? JSONSerialization.jsonObject(with: message)) as? [String: Any],
                  let id = object["id"] as? Int
            else { continue }  // events: not needed
            lock.lock()
            let continuation = pending.removeValue(forKey: id)
            lock.unlock()
            if let error = object["error"] as? [String: Any] {
                continuation?.resume(throwing: ProtocolError(description: "\(error["message"] ?? error)"))
            } else {
                let result = (try? JSONSerialization.data(withJSONObject: object["result"] ?? [String: Any]())) ?? Data("{}".utf8)
                continuation?.resume(returning: result)
            }
        }
    }

    private func failAll(_ error: any Error) {
        lock.lock()
        let waiting = pending
        pending = [:]
        lock.unlock()
        for continuation in waiting.values { continuation.resume(throwing: error) }
    }
}

extension StatusPageBrowserTests {
    /// The live jobs page: a job made before the page opened (through the API, not this tab) is
    /// listed with its timeline; one made after it appears live; the page fits a desktop and a
    /// phone width (screenshots of both are written).
    @Test(.timeLimit(.minutes(1)), .enabled(if: chromiumExecutable() != nil, "chromium is not installed: apt-get install -y chromium"))
    func theJobsPageListsAndFollowsTheUsersJobsAtTwoWidths() async throws {
        let chromium = try #require(chromiumExecutable())
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("clapper-jobs-page-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try await withGateway(GatewayOptions(configure: { $0.devMode = true })) { stack in
            // dev mode: requests without a token act as the user "dev".
            let before = try #require(try await stack.gateway.send(.POST, "/v1/jobs", body: jobBody("made before the page opened", audio: false)).json["jobId"] as? String)
            _ = try await waitForJob(before, gateway: stack.gateway, redis: stack.server, token: TestUsers.token("dev")) { isFinished($0) }
            let browser = try Browser(executable: chromium, profile: directory.appendingPathComponent("profile"))
            do {
                let session = try await browser.openStatusPage(stack.gateway.baseURL + "/")
                func card(_ jobID: String) async throws -> [String: Any] {
                    let result = try await browser.evaluate(session, """
                        new Promise((resolve, reject) => {
                          const state = () => {
                            const card = document.querySelector('.job-card[data-job-id="\(jobID)"]');
                            return card ? { status: card.querySelector(".badge.status").textContent,
                                            timeline: Array.from(card.querySelectorAll(".timeline li")).map((li) => li.textContent),
                                            connection: card.querySelector(".connection").textContent,
                                            cards: document.querySelectorAll(".job-card").length } : null;
                          };
                          const done = () => { const s = state(); return s && s.status === "completed" && s.connection === "live"; };
                          if (done()) return resolve(state());
                          const observer = new MutationObserver(() => { if (done()) { observer.disconnect(); resolve(state()); } });
                          observer.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
                          setTimeout(() => { observer.disconnect(); reject(new Error("card: " + JSON.stringify(state()))); }, 30000);
                        })
                        """)
                    return try #require(result as? [String: Any])
                }
                let listed = try await card(before)
                #expect((listed["timeline"] as? [String])?.first?.contains("completed") == true, "\(listed)")
                // Made elsewhere while the page is open: it appears, and its timeline grows live.
                let after = try #require(try await stack.gateway.send(.POST, "/v1/jobs", body: jobBody("made while the page is open", audio: false)).json["jobId"] as? String)
                let live = try await card(after)
                #expect((live["timeline"] as? [String] ?? []).count >= 3, "\(live)")
                #expect(live["cards"] as? Int == 2)
                for (name, width, height, mobile) in [("desktop", 1280, 900, false), ("phone", 390, 844, true)] {
                    _ = try await browser.call("Emulation.setDeviceMetricsOverride", ["width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile], session: session)
                    let overflow = try await browser.evaluate(session, "document.documentElement.scrollWidth - window.innerWidth") as? Int
                    #expect((overflow ?? 1) <= 0, "\(name): the page is wider than the screen by \(overflow ?? -1) px")
                    let shot = try await browser.call("Page.captureScreenshot", ["format": "png", "captureBeyondViewport": true], session: session)
                    let png = try #require((shot["data"] as? String).flatMap { Data(base64Encoded: $0) })
                    let file = directory.appendingPathComponent("jobs-page-\(name).png")
                    try png.write(to: file)
                    #expect(png.count > 1000)
                    print("jobs page screenshot (\(name)): \(file.path)")
                }
                await browser.close()
            } catch {
                await browser.close()
                throw error
            }
        }
    }
}
