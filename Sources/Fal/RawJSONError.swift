/// JSON that `RawJSON` could not scan, with the byte offset where scanning stopped.
public struct RawJSONError: Error, Sendable, Hashable, CustomStringConvertible {
    public let message: String
    public let offset: Int

    public init(_ message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}
