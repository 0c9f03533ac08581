import Foundation
import Redis

/// fal spend as Clapper estimates it, per user and UTC day: a hash per (user, day) of model ->
/// millionths of a dollar, added to when fal accepts a submit. Kept 400 days.
struct SpendLedger: Sendable {
    let redis: RedisClient
    let keys: JobKeys

    static let keepSeconds = 400 * 24 * 3600
    /// The longest range one question may cover.
    static let maxDays = 366

    func record(userID: String, model: String, cost: MicroUSD, at date: Date) async throws {
        let key = keys.spend(userID: userID, day: Self.day(date))
        _ = try await redis.pipeline([
            RedisCommand("HINCRBY", key, model, cost.value),
            RedisCommand("EXPIRE", key, Self.keepSeconds),
        ])
    }

    /// Each day's spend by model, for `days` (UTC `yyyy-MM-dd`), one pipeline.
    func spend(userID: String, days: [String]) async throws -> [(day: String, byModel: [String: MicroUSD])] {
        guard !days.isEmpty else { return [] }
        let replies = try await redis.pipeline(days.map { RedisCommand("HGETALL", keys.spend(userID: userID, day: $0)) })
        return zip(days, replies).map { day, reply in
            var byModel: [String: MicroUSD] = [:]
            let flat = reply.array ?? []
            var index = 0
            while index + 1 < flat.count {
                // A value that is not a whole number (someone else's write) is skipped, not trusted.
                if let model = flat[index].string, let value = flat[index + 1].string.flatMap({ Int64($0) }), value >= 0 {
                    byModel[model] = MicroUSD(value)
                }
                index += 2
            }
            return (day, byModel)
        }
    }

    /// Whole seconds from `date` to the next UTC midnight (1 to 86,400).
    static func secondsUntilNextDay(after date: Date) -> Int {
        let seconds = date.timeIntervalSince1970
        guard seconds.isFinite else { return 86_400 }
        let intoDay = seconds - (seconds / 86_400).rounded(.down) * 86_400
        return max(1, min(86_400, Int((86_400 - intoDay).rounded(.up))))
    }

    static func day(_ date: Date) -> String {
        let parts = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC") ?? .current, from: date)
        return String(format: "%04d-%02d-%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0)
    }

    /// The UTC days from `from` to `to` inclusive (`yyyy-MM-dd`); nil when either is not such a
    /// date, `to` is before `from`, or the range is longer than `maxDays`.
    static func days(from: String, to: String) -> [String]? {
        guard let start = date(from), let end = date(to), start <= end else { return nil }
        let count = Int((end.timeIntervalSince(start) / 86_400).rounded()) + 1
        guard count <= maxDays else { return nil }
        return (0..<count).map { day(start.addingTimeInterval(Double($0) * 86_400)) }
    }

    private static func date(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        guard bytes.count == 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
              bytes.enumerated().allSatisfy({ $0.offset == 4 || $0.offset == 7 || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0.element) }),
              let year = Int(text.prefix(4)), let month = Int(text.dropFirst(5).prefix(2)), let day = Int(text.suffix(2))
        else { return nil }
        var components = DateComponents()
        components.calendar = Calendar(identifier: .gregorian)
        components.timeZone = TimeZone(identifier: "UTC")
        (components.year, components.month, components.day) = (year, month, day)
        guard components.isValidDate, let date = components.date, Self.day(date) == text else { return nil }
        return date
    }
}
