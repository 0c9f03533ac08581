import Foundation

/// One value of a report: what the JSON line carries.
enum JSONValue: Sendable, Encodable, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByStringLiteral
{
    case int(Int)
    case number(Double)
    case bool(Bool)
    case string(String)
    case object([String: JSONValue])

    init(integerLiteral value: Int) { self = .int(value) }
    init(floatLiteral value: Double) { self = .number(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(stringLiteral value: String) { self = .string(value) }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .int(let value): try container.encode(value)
        case .number(let value) where value.isFinite: try container.encode(value)
        case .number: try container.encodeNil()  // JSON has no NaN or infinity
        case .bool(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

/// What a measurement prints: one JSON object, keys sorted (ops/bench.d/bench.py reads it).
typealias Report = [String: JSONValue]

extension Report {
    func jsonLine() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Every value is encodable (non-finite numbers become null), so this cannot fail.
        let data = (try? encoder.encode(self)) ?? Data(#"{"error":"report not encodable"}"#.utf8)
        return data + Data("\n".utf8)
    }

    /// A report of a run that could not start (a refused connection, say).
    static func failure(_ error: any Error) -> Report { ["error": .string("\(error)")] }
}

/// Latency figures of `samples` (nanoseconds) in milliseconds: `<prefix>p50_ms`, `p99_ms`, `max_ms`;
/// -1 when there are none.
func latencySummary(_ samples: [UInt64], prefix: String = "") -> Report {
    let sorted = samples.sorted()
    func percentile(_ p: Double) -> Double {
        guard !sorted.isEmpty else { return -1 }
        let index = min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)
        return Double(sorted[max(0, index)]) / 1e6
    }
    return [
        "\(prefix)p50_ms": .number(percentile(0.50)),
        "\(prefix)p99_ms": .number(percentile(0.99)),
        "\(prefix)max_ms": .number(sorted.last.map { Double($0) / 1e6 } ?? -1),
    ]
}
