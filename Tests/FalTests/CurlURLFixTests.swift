import CurlURLFix
import Fal
import Foundation
import Testing
import TestSupport

/// URLSession on Linux gives every request's parsed URL to `curl_free` instead of
/// `curl_url_cleanup` (swift-corelibs-foundation's CFURLSessionCurlHostIsEqual), leaking its parts.
/// CurlURLFix's exported `curl_free` releases such a handle whole.
@Suite("URLSession's per-request URL leak, worked around")
struct CurlURLFixTests {
    /// The test binary, like the executables, exports the fix: libraries' calls reach it.
    @Test func theProcessCallsReachTheFix() {
        #expect(URLSessionTransport.urlLeakWorkaroundActive)
    }

    /// What FoundationNetworking does per request, 20,000 times: through libcurl's own
    /// `curl_free` the heap grows by the URL's parts (other tests move the heap too, but not by
    /// megabytes); through the fix every handle is released whole.
    @Test func aURLHandleGivenToCurlFreeIsReleasedWhole() {
        let iterations = 20_000
        let leaked = clapper_curl_url_leak_probe(Int32(iterations), false)
        #expect(leaked > 100 * iterations, "libcurl's curl_free kept \(leaked) bytes")
        let before = clapper_curl_url_fix_released()
        _ = clapper_curl_url_leak_probe(Int32(iterations), true)
        #expect(clapper_curl_url_fix_released() - before >= UInt(iterations))
    }

    /// A real URLSession request (to a free port: refused at once) goes through the fix.
    @Test(.timeLimit(.minutes(1)))
    func aURLSessionRequestReleasesItsURLWhole() async throws {
        let before = clapper_curl_url_fix_released()
        let transport = URLSessionTransport()
        let request = HTTPTransportRequest(method: "GET", url: try #require(URL(string: "http://127.0.0.1:\(try FreePort.find())/nothing")))
        _ = try? await transport.send(request, timeout: .seconds(5))
        #expect(clapper_curl_url_fix_released() > before)
    }
}
