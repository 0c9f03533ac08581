/// A submitted fal request: its id and the URLs fal returned for it. Store it; later calls use
/// these URLs as they are.
public struct FalQueueRequest: Sendable, Hashable, Codable {
    public var requestID: String
    public var statusURL: String
    public var responseURL: String
    public var cancelURL: String
    public var gatewayRequestID: String?
    /// The queue position reported at submit time, when fal sent one.
    public var queuePosition: Int?

    public init(
        requestID: String,
        statusURL: String,
        responseURL: String,
        cancelURL: String,
        gatewayRequestID: String? = nil,
        queuePosition: Int? = nil
    ) {
        self.requestID = requestID
        self.statusURL = statusURL
        self.responseURL = responseURL
        self.cancelURL = cancelURL
        self.gatewayRequestID = gatewayRequestID
        self.queuePosition = queuePosition
    }

    /// Builds the URLs from the model id by fal's rule, for use only when fal did not return
    /// them: `{queue}/{owner}/{app}/requests/{id}[/status|/cancel]`, the model's subpath dropped,
    /// a leading `workflows/` or `comfy/` namespace kept.
    public init(fallbackFor model: String, requestID: String, queueURL: String) {
        let base = Self.trimmingTrailingSlashes(queueURL) + "/" + Self.appID(ofModel: model) + "/requests/" + requestID
        self.init(requestID: requestID, statusURL: base + "/status", responseURL: base, cancelURL: base + "/cancel")
    }

    /// fal's owner/app part of a model id: `fal-ai/flux/dev` -> `fal-ai/flux`,
    /// `workflows/me/my-flow/sub` -> `workflows/me/my-flow`.
    public static func appID(ofModel model: String) -> String {
        let parts = model.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        if let first = parts.first, Self.namespaces.contains(first) {
            return parts.prefix(3).joined(separator: "/")
        }
        return parts.prefix(2).joined(separator: "/")
    }

    static let namespaces: Set<String> = ["workflows", "comfy"]

    static func trimmingTrailingSlashes(_ text: String) -> String {
        var text = Substring(text)
        while text.hasSuffix("/") { text = text.dropLast() }
        return String(text)
    }

    private enum CodingKeys: String, CodingKey {
        case requestID = "request_id"
        case statusURL = "status_url"
        case responseURL = "response_url"
        case cancelURL = "cancel_url"
        case gatewayRequestID = "gateway_request_id"
        case queuePosition = "queue_position"
    }
}
