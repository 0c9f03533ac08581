import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `HTTPTransport` on Foundation's `URLSession` (libcurl on Linux).
///
/// Uses its own ephemeral session: no cookies, no cache, no credential storage.
public struct URLSessionTransport: HTTPTransport {
    private let session: URLSession

    public init() {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpCookieStorage = nil
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.httpShouldSetCookies = false
        self.session = URLSession(configuration: configuration)
    }

    public init(session: URLSession) {
        self.session = session
    }

    public func send(_ request: HTTPTransportRequest, timeout: Duration) async throws(HTTPTransportError) -> HTTPTransportResponse {
        var urlRequest = URLRequest(url: request.url)
        urlRequest.httpMethod = request.method
        // swift-corelibs-foundation truncates sub-second timeouts (0.6 s fires at once), so
        // the request gets whole seconds, rounded up; callers enforce the precise deadline.
        urlRequest.timeoutInterval = max(1, timeout.seconds.rounded(.up))
        urlRequest.cachePolicy = .reloadIgnoringLocalCacheData
        for (name, value) in request.headers {
            urlRequest.setValue(value, forHTTPHeaderField: name)
        }
        if let body = request.body {
            urlRequest.httpBody = Data(body)
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await session.data(for: urlRequest)
        } catch let error as URLError {
            throw Self.map(error)
        } catch is CancellationError {
            throw HTTPTransportError(.cancelled, mayHaveReachedServer: true, "cancelled")
        } catch {
            throw HTTPTransportError(.other, mayHaveReachedServer: true, String(describing: type(of: error)))
        }
        guard let http = response as? HTTPURLResponse else {
            throw HTTPTransportError(.other, mayHaveReachedServer: true, "not an HTTP response")
        }
        var headers: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String {
                headers[name.lowercased()] = value
            }
        }
        return HTTPTransportResponse(status: http.statusCode, headers: headers, body: [UInt8](data))
    }

    /// Classifies a `URLError`: only failures before any byte was sent count as "not reached".
    static func map(_ error: URLError) -> HTTPTransportError {
        let text = "URLError \(error.code.rawValue)"
        switch error.code {
        case .cannotConnectToHost, .cannotFindHost, .dnsLookupFailed, .notConnectedToInternet,
             .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate,
             .serverCertificateNotYetValid, .serverCertificateHasUnknownRoot,
             .clientCertificateRejected, .clientCertificateRequired, .internationalRoamingOff,
             .dataNotAllowed, .callIsActive, .appTransportSecurityRequiresSecureConnection:
            return HTTPTransportError(.cannotConnect, mayHaveReachedServer: false, text)
        case .badURL, .unsupportedURL:
            return HTTPTransportError(.invalidRequest, mayHaveReachedServer: false, text)
        case .timedOut:
            return HTTPTransportError(.timedOut, mayHaveReachedServer: true, text)
        case .networkConnectionLost:
            return HTTPTransportError(.connectionLost, mayHaveReachedServer: true, text)
        case .cancelled:
            return HTTPTransportError(.cancelled, mayHaveReachedServer: true, text)
        default:
            return HTTPTransportError(.other, mayHaveReachedServer: true, text)
        }
    }
}
