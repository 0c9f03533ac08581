/// An error of fal-sim itself (bad configuration, bad admin call).
public struct FalSimError: Error, Sendable, CustomStringConvertible {
    private enum Code: Sendable {
        case unknownFault
        case badAdminRequest
        case badConfiguration
    }

    private let code: Code
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    static func unknownFault(_ name: String) -> FalSimError {
        FalSimError(.unknownFault, "unknown fal-sim fault '\(name)'; known: \(FalSimFaults.knownNames.joined(separator: ", "))")
    }

    static func badAdminRequest(_ message: String) -> FalSimError { FalSimError(.badAdminRequest, message) }

    static func badConfiguration(_ message: String) -> FalSimError { FalSimError(.badConfiguration, message) }

    public var description: String { "FalSimError: \(message)" }
}
