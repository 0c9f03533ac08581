import Foundation
import Hummingbird

/// `/v1/admin/users/{userId}/limits`: an operator reads, sets or clears one user's overrides of
/// the default limits, and sees what the user uses now.
struct UserLimitsController {
    let store: UserLimitStore
    let clock: any WallClock

    func addRoutes(to admin: RouterGroup<ClapperRequestContext>) {
        admin.get("users/{userId}/limits") { _, context in try await show(context) }
        admin.put("users/{userId}/limits") { request, context in try await replace(request, context) }
        admin.delete("users/{userId}/limits") { _, context in try await clear(context) }
    }

    /// A user id as the API takes it: 1 to 200 code points (openapi's `maxLength`).
    static let userIDLimit = TextLimit(maxCodePoints: 200)

    private func userID(_ context: ClapperRequestContext) throws -> String {
        let id = try context.parameters.require("userId")
        guard !id.isEmpty, Self.userIDLimit.allows(id) else { throw APIError.badRequest("userId must be 1 to 200 characters", code: "invalid_user_id") }
        return id
    }

    func show(_ context: ClapperRequestContext) async throws -> Response {
        let user = try userID(context)
        return try await answer(user, overrides: try await store.overrides(user))
    }

    func replace(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let user = try userID(context)
        let overrides = try Self.parse(try await request.bodyBytes(context: context))
        try await store.setOverrides(user, overrides)
        return try await answer(user, overrides: overrides)
    }

    func clear(_ context: ClapperRequestContext) async throws -> Response {
        let user = try userID(context)
        try await store.setOverrides(user, .init())
        return try await answer(user, overrides: .init())
    }

    private func answer(_ user: String, overrides: UserLimitStore.Overrides) async throws -> Response {
        let limits = overrides.applied(to: store.defaults)
        let usage = try await store.usage(user, limits: limits, now: clock.now)
        var w = JSONWriter()
        w.beginObject()
        w.field("userId", user)
        w.key("limits")
        Self.write(limits, into: &w)
        w.key("defaults")
        Self.write(store.defaults, into: &w)
        w.key("overrides")
        w.beginObject()
        w.field("maxInFlight", overrides.maxInFlight)
        w.field("jobsPerMinute", overrides.jobsPerMinute)
        w.rawField("spendPerDayUsd", overrides.spendPerDay.map { Array($0.json.utf8) })
        w.endObject()
        w.key("usage")
        w.beginObject()
        w.field("inFlight", usage.inFlight)
        w.rawField("jobsPerMinuteTokens", usage.tokens.map { Array(String(format: "%.3f", $0).utf8) })
        w.rawField("spentTodayUsd", Array(usage.spentToday.json.utf8))
        w.endObject()
        w.endObject()
        return Response.json(w.bytes)
    }

    private static func write(_ limits: UserLimits, into w: inout JSONWriter) {
        w.beginObject()
        w.field("maxInFlight", limits.maxInFlight)
        w.field("jobsPerMinute", limits.jobsPerMinute)
        w.rawField("spendPerDayUsd", Array(limits.spendPerDay.json.utf8))
        w.endObject()
    }

    /// `{"maxInFlight"?, "jobsPerMinute"?, "spendPerDayUsd"?}`: each a number from 0 (no limit for
    /// this user) or null/absent (the default); nothing else.
    static func parse(_ body: [UInt8]) throws -> UserLimitStore.Overrides {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw APIError.badRequest("the body must be a JSON object", code: "invalid_json")
        }
        let allowed = ["maxInFlight", "jobsPerMinute", "spendPerDayUsd"]
        if let unknown = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw APIError(.unprocessableContent, code: "unknown_field", message: "unknown field \(TextLimit.shown(unknown, codePoints: 64)); allowed: \(allowed.joined(separator: ", "))")
        }
        struct Body: Decodable {
            var maxInFlight: Double?
            var jobsPerMinute: Double?
            var spendPerDayUsd: Double?
        }
        // Typed by JSONDecoder: `true`, `"5"` or an object is not a number here.
        guard let body = try? JSONDecoder().decode(Body.self, from: Data(body)) else {
            throw APIError.badRequest("maxInFlight, jobsPerMinute and spendPerDayUsd must be numbers or null", code: "invalid_field")
        }
        // A whole number in range; nothing is converted before the range is known.
        func count(_ value: Double?, _ name: String) throws -> Int? {
            guard let value else { return nil }
            guard value.rounded() == value, (0...Double(UserLimits.maxCount)).contains(value) else {
                throw APIError(.unprocessableContent, code: "validation_failed", message: "\(name) must be a whole number from 0 to \(UserLimits.maxCount), or null")
            }
            return Int(value)
        }
        var overrides = UserLimitStore.Overrides(maxInFlight: try count(body.maxInFlight, "maxInFlight"), jobsPerMinute: try count(body.jobsPerMinute, "jobsPerMinute"))
        if let value = body.spendPerDayUsd {
            guard let spend = MicroUSD(pricePerSecond: value, seconds: 1), spend <= UserLimits.maxSpend else {
                throw APIError(.unprocessableContent, code: "validation_failed", message: "spendPerDayUsd must be a number of dollars from 0 to 1000000, or null")
            }
            overrides.spendPerDay = spend
        }
        return overrides
    }
}
