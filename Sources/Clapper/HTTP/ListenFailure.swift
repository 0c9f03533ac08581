import Foundation
import NIOCore

/// One line saying why the HTTP server could not listen on `host:port` (port in use, an
/// address not on this machine, no permission), or nil when `error` is not about the
/// listening socket. `clapper` prints it instead of a stack of errors.
public func listenFailureDescription(_ error: any Error, host: String, port: Int) -> String? {
    if let error = error as? IOError {
        return "cannot listen on \(host):\(port): \(String(cString: strerror(error.errnoCode)).lowercased())"
    }
    if error is SocketAddressError {
        return "cannot listen on \(host):\(port): no such address"
    }
    return nil
}
