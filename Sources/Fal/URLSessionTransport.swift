import CurlURLFix
import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `HTTPTransport` on Foundation's `URLSession` (libcurl on Linux).
///
/// Uses its own ephemeral session: no cookies, no cache, no credential storage.
public struct URLSessionTransport: HTTPTransport {
    private let session: URLSession

    public init() {
        self.session = URLSession(configuration: Self.configuration)
    }

    /// The same session settings with a delegate (say, one that refuses redirects).
    public init(delegate: any URLSessionDelegate) {
        self.session = URLSession(configuration: Self.configuration, delegate: delegate, delegateQueue: nil)
    }

    private static var configuration: URLSessionConfiguration {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpCookieStorage = nil
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.httpShouldSetCookies = false
        return configuration
    }

    public init(session: URLSession) {
        self.session = session
    }

    /// Whether this process's URLSession requests go through CurlURLFix (the executable exports
    /// its `curl_free`): without it, each request leaks its parsed URL (about 180 bytes).
    public static var urlLeakWorkaroundActive: Bool { clapper_curl_url_fix_active() }

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
            (data, response) = try await Self.data(for: urlRequest, in: session)
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

    /// `session.data(for:)` as a data task whose cancel runs on another queue. URLSession's own
    /// async API cancels its task inside the Swift task's cancellation handler, which holds that
    /// task's lock while URLSession's queue may be waiting for the same lock to deliver the
    /// result (a timeout at that moment): on Linux both then wait for ever, and with them the
    /// cooperative pool's threads (issue 12's chaos run: every instance hung). Cancelling from a
    /// global queue, after the handler has returned, cannot wait on that lock.
    static func data(for request: URLRequest, in session: URLSession) async throws -> (Data, URLResponse) {
        let running = RunningDataTask()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(Data, URLResponse), any Error>) in
                let task = session.dataTask(with: request) { data, response, error in
                    if let error {
                        continuation.resume(throwing: error)
                    } else if let response {
                        continuation.resume(returning: (data ?? Data(), response))
                    } else {
                        continuation.resume(throwing: URLError(.badServerResponse))
                    }
                }
                running.start(task)
            }
        } onCancel: {
            running.cancel()
        }
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

/// The data task of one request, cancelled from a global queue (see `URLSessionTransport.data`).
/// A cancel that comes before the task exists cancels it as soon as it is started.
private final class RunningDataTask: Sendable {
    private struct State {
        var task: URLSessionDataTask?
        var cancelled = false
    }

    private let state = Mutex(State())

    func start(_ task: URLSessionDataTask) {
        let cancelled = state.withLock { state -> Bool in
            state.task = task
            return state.cancelled
        }
        task.resume()
        if cancelled { Self.cancelLater(task) }
    }

    func cancel() {
        let task = state.withLock { state -> URLSessionDataTask? in
            state.cancelled = true
            return state.task
        }
        if let task { Self.cancelLater(task) }
    }

    private static func cancelLater(_ task: URLSessionDataTask) {
        DispatchQueue.global().async { task.cancel() }
    }
}
