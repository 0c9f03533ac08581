import Foundation

/// A URL that carries its own authorization (SigV4 query parameters) until it expires.
///
/// Anyone holding the URL can use it, so `description` replaces the signature and any session
/// token with `<redacted>`; log that, and hand out `url` only to whom it is meant for.
public struct PresignedURL: Sendable, Equatable {
    public let url: URL
    /// The lifetime it was signed for, in seconds (X-Amz-Expires).
    public let expiresIn: Int

    static let secretParameters: Set<String> = ["x-amz-signature", "x-amz-security-token"]

    /// `url` with the values of the secret query parameters replaced.
    static func redacted(_ url: URL) -> String {
        let text = url.absoluteString
        guard let queryStart = text.firstIndex(of: "?") else { return text }
        let query = text[text.index(after: queryStart)...].split(separator: "&", omittingEmptySubsequences: false)
        let shown = query.map { item -> String in
            let name = item.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            return secretParameters.contains(name.lowercased()) ? "\(name)=<redacted>" : String(item)
        }
        return text[..<queryStart] + "?" + shown.joined(separator: "&")
    }
}

extension PresignedURL: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "PresignedURL(\(Self.redacted(url)), expiresIn: \(expiresIn)s)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["url": Self.redacted(url), "expiresIn": expiresIn], displayStyle: .struct)
    }
}
