import Foundation
import HTTPTypes
import Hummingbird
import ServiceLifecycle

/// fal-sim's HTTP surface: fal's queue API, the JWKS, and the `/_sim/` admin and media routes.
struct FalSimResponder: HTTPResponder {
    typealias Context = BasicRequestContext

    let engine: FalSimEngine
    let configuration: FalSimConfiguration
    static let maximumBody = 16 * 1024 * 1024

    func respond(to request: Request, context: Context) async throws -> Response {
        let path = request.uri.path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        if path.first == "_sim" { return try await admin(request, Array(path.dropFirst())) }
        if request.method == .get, path == [".well-known", "jwks.json"] {
            return Self.json(200, engine.signer.jwks.pythonSerialized())
        }
        if let key = configuration.key, request.headers[.authorization] != "Key \(key)" {
            let message = request.headers[.authorization] == nil
                ? "Missing authorization header. Use 'Authorization: Key <FAL_KEY>'."
                : "Invalid authentication credentials"
            return Self.answer(.detail(401, message))
        }
        // …/requests/{id}[/status[/stream] | /cancel] under owner/app (or namespace/owner/app).
        if let index = path.firstIndex(of: "requests"), index >= 2, index + 1 < path.count {
            let appPath = path[..<index].joined(separator: "/")
            let id = path[index + 1].lowercased()
            let rest = Array(path[(index + 2)...])
            switch (request.method, rest) {
            case (.get, []):
                return Self.answer(await engine.result(id: id, appPath: appPath))
            case (.get, ["status"]):
                let logs = ["1", "true"].contains(request.uri.queryParameters.get("logs")?.lowercased() ?? "0")
                return await Self.answerStalling(await engine.status(id: id, appPath: appPath, logs: logs), configuration)
            case (.get, ["status", "stream"]):
                return await statusStream(id: id, appPath: appPath)
            case (.put, ["cancel"]):
                return Self.answer(await engine.cancel(id: id, appPath: appPath))
            default:
                break
            }
        }
        if request.method == .post, path.count >= 2 {
            var request = request
            let body = try await request.collectBody(upTo: Self.maximumBody)
            let faults = request.headers[values: HTTPField.Name("X-Fal-Sim-Fault")!]
                .flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
            let answer = await engine.submit(
                model: path.joined(separator: "/"),
                body: Array(buffer: body),
                webhookURL: request.uri.queryParameters.get("fal_webhook"),
                headerFaults: faults,
                options: Dictionary(FalSimRequestRecord.optionHeaders.compactMap { name in
                    HTTPField.Name(name).flatMap { request.headers[$0] }.map { (name, $0) }
                }, uniquingKeysWith: { first, _ in first })
            )
            return await Self.answerStalling(answer, configuration)
        }
        return Self.answer(.detail(404, "Not found"))
    }

    // MARK: Status stream

    private func statusStream(id: String, appPath: String) async -> Response {
        let (events, continuation) = AsyncStream.makeStream(of: FalSimStatusEvent.self, bufferingPolicy: .bufferingNewest(32))
        guard let subscriber = await engine.subscribe(id: id, appPath: appPath, continuation: continuation) else {
            // Unknown (nothing yielded) or already completed (one status, finished).
            var statuses: [[UInt8]] = []
            continuation.finish()
            for await case .status(let bytes) in events { statuses.append(bytes) }
            guard !statuses.isEmpty else { return Self.answer(FalSimEngine.Answer.detail(404, "Request not found")) }
            return Response(
                status: .ok, headers: Self.streamHeaders,
                body: .init(byteBuffer: ByteBuffer(bytes: statuses.flatMap(Self.sseData)))
            )
        }
        let engine = self.engine
        let heartbeat = configuration.statusStreamHeartbeat
        let body = ResponseBody { writer in
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        do { try await Task.sleep(for: heartbeat) } catch { return }
                        continuation.yield(.heartbeat)
                    }
                }
                do {
                    for await event in events.cancelOnGracefulShutdown() {
                        switch event {
                        case .status(let bytes): try await writer.write(ByteBuffer(bytes: Self.sseData(bytes)))
                        case .heartbeat: try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                        }
                    }
                } catch {
                    // The client went away.
                }
                group.cancelAll()
            }
            await engine.unsubscribe(id: id, subscriber: subscriber)
            continuation.finish()
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: Self.streamHeaders, body: body)
    }

    private static let streamHeaders: HTTPFields = [
        .contentType: "text/event-stream", .cacheControl: "no-cache",
    ]

    private static func sseData(_ json: [UInt8]) -> [UInt8] {
        Array("data: ".utf8) + json + Array("\n\n".utf8)
    }

    // MARK: Admin and media

    private func admin(_ request: Request, _ path: [String]) async throws -> Response {
        let method = request.method
        if method == .get, path == ["requests"] {
            return try Self.encoded(await engine.records())
        }
        if method == .get, path.count == 2, path[0] == "requests" {
            guard let record = await engine.record(id: path[1]) else { return Self.answer(.detail(404, "Request not found")) }
            return try Self.encoded(record)
        }
        if method == .post, path == ["faults"] {
            var request = request
            let body = try await request.collectBody(upTo: 1024 * 1024)
            do {
                let rule = try JSONDecoder().decode(FalSimFaultRule.self, from: Data(body.readableBytesView))
                try await engine.addFaultRule(rule)
                return try Self.encoded(rule)
            } catch let error as FalSimError {
                return Self.answer(.detail(400, error.message))
            } catch {
                return Self.answer(.detail(400, "expected {\"model\"?, \"promptContains\"?, \"faults\": [...], \"times\"?}: \(error)"))
            }
        }
        if method == .post, path == ["webhooks", "release"] {
            let reverse = request.uri.queryParameters.get("order") == "reverse"
            let ids = await engine.releaseHeldWebhooks(reverse: reverse)
            return Self.json(200, FalSimJSON.object(["released": .array(ids.map(FalSimJSON.string))]).pythonSerialized())
        }
        if method == .get, path.count == 3, path[0] == "media", path[1] == "video" {
            return Self.media(FalSimMedia.mp4, contentType: "video/mp4", range: request.headers[.range])
        }
        if method == .get, path.count == 4, path[0] == "media", path[1] == "audio", let millis = Int(path[2]), millis >= 0 {
            let wav = FalSimMedia.wav(seconds: Double(millis) / 1000)
            return Self.media(wav, contentType: "audio/wav", range: request.headers[.range])
        }
        return Self.answer(.detail(404, "Not found"))
    }

    // MARK: Helpers

    /// A media file, or the one range `Range: bytes=a-b` asks for (206 with `Content-Range`), as
    /// fal's storage answers; a range past the end is 416.
    static func media(_ bytes: [UInt8], contentType: String, range: String?) -> Response {
        guard let range, let spec = FalSimMedia.range(range, size: bytes.count) else {
            return Response(status: .ok, headers: [.contentType: contentType, .acceptRanges: "bytes"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        guard let (first, last) = spec else {
            return Response(status: .rangeNotSatisfiable, headers: [.contentRange: "bytes */\(bytes.count)"])
        }
        return Response(
            status: .partialContent,
            headers: [.contentType: contentType, .acceptRanges: "bytes", .contentRange: "bytes \(first)-\(last)/\(bytes.count)"],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes[first...last]))
        )
    }

    private static func json(_ status: Int, _ bytes: [UInt8]) -> Response {
        Response(
            status: HTTPResponse.Status(code: status),
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes))
        )
    }

    private static func answer(_ answer: FalSimEngine.Answer) -> Response {
        var response = json(answer.status, answer.body)
        if let retryAfter = answer.retryAfter { response.headers[.retryAfter] = retryAfter }
        if let errorType = answer.errorType { response.headers[HTTPField.Name("X-Fal-Error-Type")!] = errorType }
        if let timeoutType = answer.timeoutType { response.headers[HTTPField.Name("X-Fal-Request-Timeout-Type")!] = timeoutType }
        return response
    }

    /// Answers, after holding back for `stallDuration` when the answer says so (ends early on
    /// shutdown or when the client's task is cancelled).
    private static func answerStalling(_ answer: FalSimEngine.Answer, _ configuration: FalSimConfiguration) async -> Response {
        if answer.stall {
            let duration = configuration.stallDuration
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
        }
        return Self.answer(answer)
    }

    private static func encoded(_ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return json(200, Array(try encoder.encode(value)))
    }
}
