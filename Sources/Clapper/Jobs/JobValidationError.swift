/// Why a `POST /v1/jobs` body was refused: `status` 400 for a body that is not the right JSON
/// shape (`invalid_json`, `invalid_field`), 422 for a well-formed body that breaks a rule
/// (`validation_failed`, `unknown_field`). `message` names the field and never echoes its value.
public struct JobValidationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    /// HTTP status: 400 or 422.
    public var status: Int
    /// The offending field as a dotted path (`video.aspectRatio`), when there is one.
    public var field: String?

    public init(code: String, message: String, status: Int, field: String? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.field = field
    }

    public var description: String { "\(code): \(message)" }

    /// 400: not JSON, not an object, or a duplicate key.
    static func invalidJSON(_ message: String) -> JobValidationError {
        JobValidationError(code: "invalid_json", message: message, status: 400)
    }

    /// 400: the field has the wrong JSON type.
    static func invalidField(_ field: String, expected: String) -> JobValidationError {
        JobValidationError(code: "invalid_field", message: "\(field) must be \(expected)", status: 400, field: field)
    }

    /// 422: a field this API does not know. Its name is echoed cut to 100 code points (not
    /// grapheme clusters, which can be any size).
    static func unknownField(_ field: String) -> JobValidationError {
        let shown = TextLimit.shown(field, codePoints: 100)
        return JobValidationError(code: "unknown_field", message: "unknown field \(shown)", status: 422, field: shown)
    }

    /// 422: a rule broken.
    static func failed(_ field: String, _ message: String) -> JobValidationError {
        JobValidationError(code: "validation_failed", message: "\(field) \(message)", status: 422, field: field)
    }
}
