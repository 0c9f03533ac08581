import Foundation

/// One outbound HTTP exchange: the seam between the fal client and the network.
///
/// `URLSessionTransport` is the production implementation; tests substitute in-memory
/// transports (JWKS, fault wrappers) without sockets.
public protocol HTTPTransport: Sendable {
    /// Sends `request` and returns the whole response, or throws when no response arrived
    /// within `timeout`. Any HTTP status, including 4xx and 5xx, is a response, not an error.
    func send(_ request: HTTPTransportRequest, timeout: Duration) async throws(HTTPTransportError) -> HTTPTransportResponse
}
