/// A webhook body fal posts when a request ends, parsed from raw bytes.
///
/// `payload` keeps the exact bytes of the JSON value: outputs carry integers above `Int64`
/// and a re-encoded body would not be the one fal signed.
public struct FalWebhook: Sendable, Hashable {
    public enum Status: Sendable, Hashable {
        case ok
        case error
        case other(String)
    }

    public var requestID: String
    public var gatewayRequestID: String?
    public var status: Status
    /// The raw JSON of `payload` (the output, or the error body on ERROR); nil when null or absent.
    public var payload: ArraySlice<UInt8>?
    /// `error`, e.g. `Invalid status code: 422`.
    public var error: String?
    /// `payload_error`: why the output could not be serialised (payload is then null).
    public var payloadError: String?

    public init(
        requestID: String,
        gatewayRequestID: String? = nil,
        status: Status,
        payload: ArraySlice<UInt8>? = nil,
        error: String? = nil,
        payloadError: String? = nil
    ) {
        self.requestID = requestID
        self.gatewayRequestID = gatewayRequestID
        self.status = status
        self.payload = payload
        self.error = error
        self.payloadError = payloadError
    }

    /// Parses a webhook body. Throws when it is not a JSON object, or lacks `request_id` or `status`.
    public init(parsing body: [UInt8]) throws(RawJSONError) {
        let members = try RawJSON.members(of: body)
        func raw(_ key: String) -> ArraySlice<UInt8>? { members.first { $0.key == key }?.value }
        func string(_ key: String) -> String? { raw(key).flatMap { RawJSON.string($0) } }
        guard let requestID = string("request_id") else { throw RawJSONError("webhook has no string request_id", offset: 0) }
        guard let status = string("status") else { throw RawJSONError("webhook has no string status", offset: 0) }
        self.requestID = requestID
        self.gatewayRequestID = string("gateway_request_id")
        self.status = switch status {
        case "OK": .ok
        case "ERROR": .error
        default: .other(status)
        }
        if let payload = raw("payload"), !RawJSON.isNull(payload) {
            self.payload = payload
        } else {
            self.payload = nil
        }
        self.error = string("error")
        self.payloadError = string("payload_error")
    }

    /// The payload as its own array of bytes.
    public var payloadBytes: [UInt8]? { payload.map(Array.init) }
}
