/// What this module throws: a stable code to branch on and a message for people.
///
/// Messages name what was wrong with an input, never a secret.
public struct S3Error: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// A bucket URL that is not http(s)://host[:port][/bucket], or a bucket name S3 would refuse.
        case invalidBucketURL
        /// An object key that is empty, too long, or has a `.`/`..` segment (clients rewrite those).
        case invalidKey
        /// A part number outside 1...10000, an empty upload ID, or an empty or unordered part list.
        case invalidMultipart
        /// A presigned URL lifetime outside 1...604800 seconds, or a URL without a host.
        case invalidPresign
        /// A reply body that is not the XML document S3 sends for that operation.
        case malformedReply
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "S3Error(\(code.rawValue)): \(message)" }
}
