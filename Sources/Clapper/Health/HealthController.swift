import HTTPTypes
import Hummingbird
import Logging
import Redis

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
        let outcome = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                do {
                    let reply = try await redis.send("PING")
                    return reply == .status("PONG") ? nil : "unexpected reply to PING"
                } catch let error as RedisError {
                    return "redis: \(error.code)"
                } catch {
                    return "redis: unavailable"
                }
            }
            group.addTask {
                try? await Task.sleep(for: readyTimeout)
                return "redis: no answer within \(readyTimeout)"
            }
            let first = await group.next() ?? "redis: unknown"
            group.cancelAll()
            return first
        }
        if let reason = outcome {
            context.logger.warning("not ready", metadata: ["reason": "\(reason)"])
            throw APIError.unavailable(reason, code: "not_ready")
        }
        return Response.json(#"{"status":"ready"}"#)
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
