import Foundation
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Server-side request forgery guard for operators' endpoint URLs: http(s) only, and every address
/// the host resolves to must be public (no loopback, link-local, private, shared, multicast or
/// unspecified ones) unless the host is on the operator's allow-list
/// (`CLAPPER_OUTBOUND_ALLOW_HOSTS`). Checked when an endpoint is registered and again right before
/// each delivery connects (a name that now resolves elsewhere is caught then).
struct OutboundAddressGuard: Sendable {
    var allowedHosts: Set<String> = []

    struct Refusal: Error, Sendable { let message: String }

    /// `check` with the name resolved on NIO's thread pool: `getaddrinfo` blocks on DNS, which
    /// must not hold a thread of the cooperative pool or an event loop.
    func checkOffPool(_ text: String) async throws(Refusal) -> URL {
        let result: Result<URL, Refusal>
        do {
            result = try await NIOThreadPool.singleton.runIfActive { () -> Result<URL, Refusal> in
                do throws(Refusal) { return .success(try check(text)) } catch { return .failure(error) }
            }
        } catch {
            throw Refusal(message: "the address could not be checked now")
        }
        return try result.get()
    }

    /// Blocking (it resolves the name): call `checkOffPool` from async code.
    func check(_ text: String) throws(Refusal) -> URL {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
              let host = url.host?.lowercased(), !host.isEmpty, url.user == nil, url.password == nil
        else { throw Refusal(message: "the URL must be http(s)://host[:port]/path without credentials") }
        guard text.utf8.count <= 2048 else { throw Refusal(message: "the URL is longer than 2048 bytes") }
        if allowedHosts.contains(host) { return url }
        let addresses = Self.resolve(host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")))
        guard !addresses.isEmpty else { throw Refusal(message: "\(host) does not resolve") }
        if let inner = addresses.first(where: { !Self.isPublic($0) }) {
            throw Refusal(message: "\(host) resolves to \(Self.describe(inner)), which is not a public address (allow it with CLAPPER_OUTBOUND_ALLOW_HOSTS)")
        }
        return url
    }

    /// An address as bytes: 4 for IPv4, 16 for IPv6.
    static func resolve(_ host: String) -> [[UInt8]] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [[UInt8]] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if info.pointee.ai_family == AF_INET, let raw = info.pointee.ai_addr {
                raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                    addresses.append(withUnsafeBytes(of: address.pointee.sin_addr.s_addr) { Array($0) })
                }
            } else if info.pointee.ai_family == AF_INET6, let raw = info.pointee.ai_addr {
                raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    addresses.append(withUnsafeBytes(of: address.pointee.sin6_addr) { Array($0) })
                }
            }
            cursor = info.pointee.ai_next
        }
        return addresses
    }

    static func isPublic(_ address: [UInt8]) -> Bool {
        if address.count == 4 { return isPublicV4(address) }
        guard address.count == 16 else { return false }
        // ::ffff:a.b.c.d and the like: judged as the IPv4 address inside.
        if address[0..<10].allSatisfy({ $0 == 0 }), address[10] == 0xFF, address[11] == 0xFF { return isPublicV4(Array(address[12...])) }
        if address.allSatisfy({ $0 == 0 }) { return false }  // ::
        if address[0..<15].allSatisfy({ $0 == 0 }), address[15] == 1 { return false }  // ::1
        if address[0] == 0xFE, address[1] & 0xC0 == 0x80 { return false }  // fe80::/10 link-local
        if address[0] & 0xFE == 0xFC { return false }  // fc00::/7 unique local
        if address[0] == 0xFF { return false }  // multicast
        return true
    }

    private static func isPublicV4(_ a: [UInt8]) -> Bool {
        switch (a[0], a[1]) {
        case (0, _), (10, _), (127, _): return false
        case (100, 64...127): return false  // shared address space
        case (169, 254): return false  // link-local, cloud metadata
        case (172, 16...31), (192, 168): return false
        case (192, 0) where a[2] == 0: return false
        case (198, 18...19): return false
        case (224..., _): return false  // multicast, reserved, broadcast
        default: return true
        }
    }

    static func describe(_ address: [UInt8]) -> String {
        address.count == 4 ? address.map(String.init).joined(separator: ".") : stride(from: 0, to: address.count, by: 2).map { String(format: "%x", Int(address[$0]) << 8 | Int(address[$0 + 1])) }.joined(separator: ":")
    }
}
