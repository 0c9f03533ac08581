import Foundation

extension Date {
    /// Whole milliseconds since 1970 (rounded to nearest), as Redis scores and stream ids use.
    var milliseconds: Int64 { milliseconds(.toNearestOrAwayFromZero) }

    /// Whole milliseconds since 1970, clamped to Int64's range (NaN is 0): a date decoded from a
    /// damaged or hostile record never traps the conversion.
    func milliseconds(_ rule: FloatingPointRoundingRule) -> Int64 {
        let value = (timeIntervalSince1970 * 1000).rounded(rule)
        if value.isNaN { return 0 }
        if value >= 9_223_372_036_854_775_808.0 { return .max }
        if value <= -9_223_372_036_854_775_808.0 { return .min }
        return Int64(value)
    }
}
