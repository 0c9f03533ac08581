/// One entry of a 422 body `{"detail":[{"loc":[…],"msg":"…","type":"…"}]}`.
public struct FalValidationDetail: Sendable, Hashable, Codable {
    /// The path to the offending field, e.g. `["body", "prompt"]`; integer steps as decimal strings.
    public var location: [String]
    public var message: String
    /// e.g. `missing`, `less_than_equal`, `content_policy_violation`.
    public var type: String

    public init(location: [String], message: String, type: String) {
        self.location = location
        self.message = message
        self.type = type
    }

    private enum CodingKeys: String, CodingKey {
        case location = "loc", message = "msg", type
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        var steps: [String] = []
        if var loc = try? container.nestedUnkeyedContainer(forKey: .location) {
            while !loc.isAtEnd {
                if let text = try? loc.decode(String.self) {
                    steps.append(text)
                } else if let number = try? loc.decode(Int.self) {
                    steps.append(String(number))
                } else {
                    _ = try? loc.decode(FalIgnoredValue.self)
                    steps.append("?")
                }
            }
        }
        self.location = steps
        self.message = (try? container.decode(String.self, forKey: .message)) ?? ""
        self.type = (try? container.decode(String.self, forKey: .type)) ?? ""
    }
}

/// Consumes any JSON value while decoding.
struct FalIgnoredValue: Decodable {
    init(from decoder: any Decoder) throws {}
}
