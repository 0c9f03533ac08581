/// An amount of US dollars in millionths, so estimates add up exactly (no floating-point drift).
public struct MicroUSD: Sendable, Hashable, Codable, Comparable {
    public var value: Int64

    public init(_ value: Int64) { self.value = value }

    /// `pricePerSecond` dollars a second for `seconds`, rounded to the nearest millionth;
    /// nil when the price is not a finite amount under a million dollars a second.
    public init?(pricePerSecond: Double, seconds: Int) {
        let micro = (pricePerSecond * 1_000_000).rounded() * Double(seconds)
        guard micro.isFinite, micro >= 0, micro < 1e15, let value = Int64(exactly: micro.rounded()) else { return nil }
        self.value = value
    }

    public static func < (lhs: MicroUSD, rhs: MicroUSD) -> Bool { lhs.value < rhs.value }
    public static func + (lhs: MicroUSD, rhs: MicroUSD) -> MicroUSD { MicroUSD(lhs.value &+ rhs.value) }

    /// Dollars as a JSON number, exact: `0.2`, `0.000125`, `3`.
    public var json: String {
        let whole = value / 1_000_000, fraction = value % 1_000_000
        guard fraction != 0 else { return String(whole) }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 6 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }

    public var dollars: Double { Double(value) / 1_000_000 }
}
