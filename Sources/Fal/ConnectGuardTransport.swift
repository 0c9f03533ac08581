import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// An `HTTPTransport` that stops opening connections to an origin (scheme, host, port) that
/// refuses them, by `ConnectBreaker`'s rules, and probes it with a plain TCP connect (SwiftNIO,
/// not URLSession) before letting requests through again.
public final class ConnectGuardTransport: HTTPTransport, Sendable {
    private let inner: any HTTPTransport
    /// Breakers of origins that refused lately; an origin with none is closed.
    private let breakers = Mutex<[Origin: ConnectBreaker]>([:])
    private let refusedLocally = Atomic<Int>(0)
    private let eventLoopGroup: any EventLoopGroup

    private struct Origin: Hashable {
        var host: String
        var port: Int
    }

    public init(_ inner: any HTTPTransport, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.inner = inner
        self.eventLoopGroup = eventLoopGroup
    }

    /// Requests failed here without a connection being tried.
    public var refusedCount: Int { refusedLocally.load(ordering: .relaxed) }

    public func send(_ request: HTTPTransportRequest, timeout: Duration) async throws(HTTPTransportError) -> HTTPTransportResponse {
        guard let origin = Self.origin(of: request.url) else { return try await inner.send(request, timeout: timeout) }
        switch breakers.withLock({ $0[origin]?.decide(now: .now) ?? .send }) {
        case .send:
            break
        case .refuse:
            refusedLocally.add(1, ordering: .relaxed)
            throw .cannotConnect("\(origin.host):\(origin.port) refused a connection just now; not tried again yet")
        case .probe:
            guard await probe(origin, timeout: min(timeout, .seconds(2))) else {
                breakers.withLock { $0[origin, default: ConnectBreaker()].failedToConnect(now: .now) }
                throw .cannotConnect("\(origin.host):\(origin.port) still refuses connections")
            }
            breakers.withLock { $0[origin] = nil }
        }
        do {
            let response = try await inner.send(request, timeout: timeout)
            breakers.withLock { $0[origin] = nil }
            return response
        } catch {
            if error.code == .cannotConnect {
                breakers.withLock { $0[origin, default: ConnectBreaker()].failedToConnect(now: .now) }
            }
            throw error
        }
    }

    private func probe(_ origin: Origin, timeout: Duration) async -> Bool {
        let connect = ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(TimeAmount(timeout))
            .connect(host: origin.host, port: origin.port)
        guard let channel = try? await connect.get() else { return false }
        try? await channel.close()
        return true
    }

    private static func origin(of url: URL) -> Origin? {
        guard let host = url.host, !host.isEmpty else { return nil }
        let port = url.port ?? (url.scheme?.lowercased() == "https" ? 443 : 80)
        return Origin(host: host, port: port)
    }
}
