/// Formats numbers as Python's `json.dumps` does: `int` literals unchanged, `float` as `repr`.
enum FalSimPythonNumber {
    /// The Python text for a JSON number literal.
    static func normalise(_ literal: String) -> String {
        if !literal.contains(where: { ".eE".contains($0) }) {
            // Python int: unchanged, except that "-0" is 0.
            return literal.allSatisfy({ $0 == "-" || $0 == "0" }) ? "0" : literal
        }
        guard let value = Double(literal) else { return literal }
        if value.isInfinite { return value > 0 ? "Infinity" : "-Infinity" }
        return repr(value)
    }

    /// Python's `repr(float)`: the shortest round-trip digits, exponent notation when the
    /// decimal point position is <= -4 or > 16, `.0` added to integral values.
    static func repr(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "Infinity" : "-Infinity" }
        let sign = value.sign == .minus ? "-" : ""
        // Swift's description is also shortest round-trip; only the layout differs.
        let text = abs(value).description
        let parts = text.split(separator: "e", maxSplits: 1)
        // Swift writes exponents as `e-05` / `e+20`; anything else would be a surprise, not a trap.
        guard let exponent = parts.count == 2 ? Int(parts[1]) : 0 else { return value.description }
        let mantissa = parts[0].split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let integerPart = String(mantissa[0])
        let fractionPart = mantissa.count == 2 ? String(mantissa[1]) : ""
        var digits = Array(integerPart + fractionPart)
        var point = integerPart.count + exponent
        while digits.count > 1, digits.first == "0" {
            digits.removeFirst()
            point -= 1
        }
        while digits.count > 1, digits.last == "0" { digits.removeLast() }
        if digits == ["0"] { return sign + "0.0" }
        if point <= -4 || point > 16 {
            var out = sign + String(digits[0])
            if digits.count > 1 { out += "." + String(digits[1...]) }
            let e = point - 1
            out += "e" + (e < 0 ? "-" : "+") + (abs(e) < 10 ? "0" : "") + String(abs(e))
            return out
        }
        if point <= 0 {
            return sign + "0." + String(repeating: "0", count: -point) + String(digits)
        }
        if point >= digits.count {
            return sign + String(digits) + String(repeating: "0", count: point - digits.count) + ".0"
        }
        return sign + String(digits[..<point]) + "." + String(digits[point...])
    }
}
