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
