import HTTPTypes
import Hummingbird
import Logging
import Redis
import Synchronization

/// `/healthz`: the process answers. `/readyz`: Redis answers PING within the deadline, asked
/// through a `ReadinessProbe` (one PING in flight at a time, shared by concurrent callers).
struct HealthController {
    let probe: ReadinessProbe
    let readyTimeout: Duration

    init(redis: RedisClient, readyTimeout: Duration) {
        self.probe = ReadinessProbe {
            do {
                let reply = try await redis.send("PING")
                return reply == .status("PONG") ? nil : "unexpected reply to PING"
            } catch let error as RedisError {
                return "redis: \(error.code)"
            } catch {
                return "redis: unavailable"
            }
        }
        self.readyTimeout = readyTimeout
    }

    func addRoutes(to group: RouterGroup<ClapperRequestContext>) {
        group.get("healthz") { _, _ in
            Response.json(#"{"status":"ok"}"#)
        }
        group.get("readyz") { _, context in
            try await ready(context: context)
        }
    }

    func ready(context: ClapperRequestContext) async throws -> Response {
        if let reason = await probe.check(deadline: readyTimeout) {
            context.logger.warning("not ready", metadata: ["reason": "\(reason)"])
            throw APIError.unavailable(reason, code: "not_ready")
        }
        return Response.json(#"{"status":"ready"}"#)
    }
}

/// A continuation resumed by whichever answer comes first; later answers are dropped. An answer
/// that comes before the continuation is set is kept and given to it when it is set.
final class OneShot<Value: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Value, Never>?
        var answer: Value?
        var done = false
    }

    private let state = Mutex(State())

    func set(_ continuation: CheckedContinuation<Value, Never>) {
        let early = state.withLock { state -> Value? in
            guard let answer = state.answer else {
                state.continuation = continuation
                return nil
            }
            state.answer = nil
            return answer
        }
        if let early { continuation.resume(returning: early) }
    }

    func resume(_ value: Value) {
        let continuation = state.withLock { state -> CheckedContinuation<Value, Never>? in
            guard !state.done else { return nil }
            state.done = true
            guard let continuation = state.continuation else {
                state.answer = value
                return nil
            }
            state.continuation = nil
            return continuation
        }
        continuation?.resume(returning: value)
    }
}

extension Response {
    /// A JSON response from bytes already encoded.
    static func json(_ bytes: [UInt8], status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func json(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        json(Array(text.utf8), status: status)
    }
}
