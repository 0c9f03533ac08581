import HTTPTypes
import Hummingbird
import Logging
import Redis
import Synchronization

/// `/healthz`: the process answers. `/readyz`: Redis answers PING within the deadline.
struct HealthController {
    let redis: RedisClient
    let readyTimeout: Duration

    func register(on routes: inout RouteRegistrar<ClapperRequestContext>) {
        routes.on(.get, "/healthz") { _, _ in
            Response.json(#"{"status":"ok"}"#)
        }
        routes.on(.get, "/readyz") { _, context in
            try await ready(context: context)
        }
    }

    func ready(context: ClapperRequestContext) async throws -> Response {
        if let reason = await pingWithin(readyTimeout) {
            context.logger.warning("not ready", metadata: ["reason": "\(reason)"])
            throw APIError.unavailable(reason, code: "not_ready")
        }
        return Response.json(#"{"status":"ready"}"#)
    }

    /// PINGs Redis; answers at the deadline even when the PING is still blocked (it ends on its
    /// own within the command timeout), so /readyz never waits longer than `timeout`.
    private func pingWithin(_ timeout: Duration) async -> String? {
        let answer = OneShot<String?>()
        return await withCheckedContinuation { continuation in
            answer.set(continuation)
            Task {
                do {
                    let reply = try await redis.send("PING")
                    answer.resume(reply == .status("PONG") ? nil : "unexpected reply to PING")
                } catch let error as RedisError {
                    answer.resume("redis: \(error.code)")
                } catch {
                    answer.resume("redis: unavailable")
                }
            }
            Task {
                try? await Task.sleep(for: timeout)
                answer.resume("redis: no answer within \(timeout)")
            }
        }
    }
}

/// A continuation resumed by whichever answer comes first; later answers are dropped.
/// `set` runs before any answer can arrive (the answering tasks start after it).
final class OneShot<Value: Sendable>: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<Value, Never>?, done: Bool)>((nil, false))

    func set(_ continuation: CheckedContinuation<Value, Never>) {
        state.withLock { $0.continuation = continuation }
    }

    func resume(_ value: Value) {
        let continuation = state.withLock { state -> CheckedContinuation<Value, Never>? in
            guard !state.done else { return nil }
            state.done = true
            return state.continuation
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
