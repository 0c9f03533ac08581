import Foundation

/// An error document from S3: `<Error><Code>SlowDown</Code><Message>…</Message>…</Error>`.
///
/// Only Code, Message, RequestId and Resource are kept: the `SignatureProvided`, `StringToSign`
/// and `CanonicalRequest` that SignatureDoesNotMatch echoes never reach `description`.
public struct S3ErrorReply: Error, Sendable, Equatable, CustomStringConvertible {
    /// Codes that mean "try again later", not "this request is wrong".
    public static let retryableCodes: Set<String> = [
        "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed",
    ]

    public let code: String
    public let message: String
    public let requestID: String?
    public let resource: String?

    /// Nil unless `xml` is a well-formed `<Error>` (or `<ErrorResponse>`) document with a Code.
    public init?(xml: Data) {
        guard let reply = try? S3XMLReply(xml), reply.root == "Error" || reply.root == "ErrorResponse",
            let code = reply.values["Code"], !code.isEmpty
        else { return nil }
        self.code = code
        self.message = reply.values["Message"] ?? ""
        self.requestID = reply.values["RequestId"]
        self.resource = reply.values["Resource"]
    }

    public var isRetryable: Bool { Self.retryableCodes.contains(code) }

    public var description: String {
        "S3 \(code): \(message)" + (requestID.map { " (request \($0))" } ?? "")
    }
}
