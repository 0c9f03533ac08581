/// A length limit on a text field, counted the way `openapi.yaml` states it: JSON Schema's
/// `maxLength` counts Unicode code points. Not `String.count`, which counts grapheme clusters:
/// one letter followed by 300,000 combining marks is one `Character` and 600 KB.
///
/// Each limit also caps the field's UTF-8 bytes (4 per code point by default, the most a code
/// point takes, so every text within `maxCodePoints` fits). The byte count is read first: it costs
/// nothing on a native string, so an oversized field is refused before any of it is walked.
struct TextLimit: Sendable, Hashable {
    var maxCodePoints: Int
    var maxBytes: Int

    init(maxCodePoints: Int, maxBytes: Int? = nil) {
        self.maxCodePoints = maxCodePoints
        self.maxBytes = maxBytes ?? 4 * maxCodePoints
    }

    /// Whether `text` is within both caps.
    func allows(_ text: some StringProtocol) -> Bool {
        text.utf8.count <= maxBytes && text.unicodeScalars.count <= maxCodePoints
    }

    /// "at most 2000 characters (Unicode code points) and 8000 bytes of UTF-8", for messages.
    var described: String {
        "at most \(maxCodePoints) characters (Unicode code points) and \(maxBytes) bytes of UTF-8"
    }

    /// At most `codePoints` code points of `text`, with "…" when cut: a client's text (an unknown
    /// key) echoed in an error stays small whatever it holds.
    static func shown(_ text: some StringProtocol, codePoints: Int) -> String {
        var scalars = String.UnicodeScalarView()
        var count = 0
        for scalar in text.unicodeScalars {
            guard count < codePoints else { return String(scalars) + "…" }
            scalars.append(scalar)
            count += 1
        }
        return String(scalars)
    }
}
