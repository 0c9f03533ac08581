/// Checks a model input the way fal's pydantic models do, collecting fal's `detail` entries.
struct FalSimInputValidator {
    let input: [String: FalSimJSON]
    private(set) var details: [FalSimJSON] = []

    init(input: [String: FalSimJSON]) {
        self.input = input
    }

    private mutating func fail(_ field: String, _ message: String, _ type: String, context: [String: FalSimJSON]? = nil) {
        var entry: [String: FalSimJSON] = [
            "loc": .array([.string("body"), .string(field)]),
            "msg": .string(message),
            "type": .string(type),
        ]
        if let context { entry["ctx"] = .object(context) }
        details.append(.object(entry))
    }

    /// A required string field.
    @discardableResult
    mutating func requiredString(_ field: String) -> String? {
        guard let value = input[field], value != .null else {
            fail(field, "field required", "value_error.missing")
            return nil
        }
        guard case .string(let string) = value else {
            fail(field, "str type expected", "type_error.str")
            return nil
        }
        return string
    }

    @discardableResult
    mutating func optionalString(_ field: String, oneOf allowed: [String], default fallback: String) -> String {
        guard let value = input[field], value != .null else { return fallback }
        guard case .string(let string) = value, allowed.contains(string) else {
            let permitted = allowed.map { "'\($0)'" }.joined(separator: ", ")
            fail(field, "value is not a valid enumeration member; permitted: \(permitted)", "type_error.enum",
                 context: ["enum_values": .array(allowed.map(FalSimJSON.string))])
            return fallback
        }
        return string
    }

    /// A number field; `required` makes a missing one an error.
    @discardableResult
    mutating func number(_ field: String, required: Bool = false, integer: Bool = false, default fallback: Double,
                         minimum: Double? = nil, maximum: Double? = nil) -> Double {
        guard let value = input[field], value != .null else {
            if required { fail(field, "field required", "value_error.missing") }
            return fallback
        }
        guard let number = value.doubleValue, !integer || number == number.rounded() else {
            if integer {
                fail(field, "value is not a valid integer", "type_error.integer")
            } else {
                fail(field, "value is not a valid float", "type_error.float")
            }
            return fallback
        }
        if let minimum, number < minimum {
            fail(field, "ensure this value is greater than or equal to \(Self.format(minimum))", "value_error.number.not_ge",
                 context: ["limit_value": Self.limit(minimum)])
            return fallback
        }
        if let maximum, number > maximum {
            fail(field, "ensure this value is less than or equal to \(Self.format(maximum))", "value_error.number.not_le",
                 context: ["limit_value": Self.limit(maximum)])
            return fallback
        }
        return number
    }

    private static func format(_ value: Double) -> String {
        Int(exactly: value).map(String.init) ?? FalSimPythonNumber.repr(value)
    }

    private static func limit(_ value: Double) -> FalSimJSON {
        Int(exactly: value).map { FalSimJSON.int($0) } ?? .double(value)
    }

    /// The 422 failure, if any check failed.
    var failure: FalSimModelResult? {
        details.isEmpty ? nil : .failure(status: 422, body: .object(["detail": .array(details)]))
    }
}
