/// JSON text that could not be parsed.
public struct FalSimJSONError: Error, Sendable, CustomStringConvertible {
    /// Byte offset where parsing stopped.
    public let offset: Int
    public let message: String

    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}
