import Foundation
import HTTPTypes
import Hummingbird

/// An error answered to the client as `{"error":{"code","message"}}` with its status.
/// Only messages written for clients go here; internal errors become a bare 500.
public struct APIError: Error, HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: Self.body(code: code, message: message))))
    }

    static func body(code: String, message: String) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.key("error")
        w.beginObject()
        w.field("code", code)
        w.field("message", message)
        w.endObject()
        w.endObject()
        return w.bytes
    }

    public static func notFound(_ message: String = "not found") -> APIError { APIError(.notFound, code: "not_found", message: message) }
    public static func badRequest(_ message: String, code: String = "bad_request") -> APIError { APIError(.badRequest, code: code, message: message) }
    public static func unauthorized(_ message: String = "authentication required", code: String = "unauthorized") -> APIError {
        APIError(.unauthorized, code: code, message: message, headers: [.wwwAuthenticate: "Bearer"])
    }
    public static func conflict(_ message: String, code: String = "conflict") -> APIError { APIError(.conflict, code: code, message: message) }
    public static func unavailable(_ message: String, code: String = "unavailable") -> APIError { APIError(.serviceUnavailable, code: code, message: message) }
}
