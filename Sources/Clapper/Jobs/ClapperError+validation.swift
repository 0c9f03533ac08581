/// Why a `POST /v1/jobs` body was refused: `invalidJSON` / `invalidField` for a body that is not
/// the right JSON shape, `validationFailed` / `unknownField` for a well-formed body that breaks a
/// rule. The message names the field and never echoes its value.
extension ClapperError {
    /// not JSON, not an object, or a duplicate key.
    static func invalidJSON(_ message: String) -> ClapperError {
        ClapperError(.invalidJSON, message)
    }

    /// the field has the wrong JSON type.
    static func invalidField(_ field: String, expected: String) -> ClapperError {
        ClapperError(.invalidField, "\(field) must be \(expected)", field: field)
    }

    /// a field this API does not know. Its name is echoed cut to 100 code points (not
    /// grapheme clusters, which can be any size).
    static func unknownField(_ field: String) -> ClapperError {
        let shown = TextLimit.shown(field, codePoints: 100)
        return ClapperError(.unknownField, "unknown field \(shown)", field: shown)
    }

    /// a rule broken.
    static func failed(_ field: String, _ message: String) -> ClapperError {
        ClapperError(.validationFailed, "\(field) \(message)", field: field)
    }
}
