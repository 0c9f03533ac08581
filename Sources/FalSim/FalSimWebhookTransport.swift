import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Outcome of one webhook POST.
struct FalSimDeliveryResult: Sendable, Equatable {
    var statusCode: Int?
    var error: String?

    var succeeded: Bool { statusCode.map { (200..<300).contains($0) } ?? false }
}

/// Sends webhook POSTs.
protocol FalSimWebhookTransport: Sendable {
    func post(url: URL, headers: [(String, String)], body: [UInt8]) async -> FalSimDeliveryResult
}

/// Webhook POSTs through Foundation's URLSession (libcurl on Linux).
struct FalSimURLSessionTransport: FalSimWebhookTransport {
    let session: URLSession
    let timeout: Duration

    init(timeout: Duration) {
        let configuration = URLSessionConfiguration.ephemeral
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        configuration.timeoutIntervalForRequest = seconds
        configuration.timeoutIntervalForResource = seconds
        self.session = URLSession(configuration: configuration)
        self.timeout = timeout
    }

    func post(url: URL, headers: [(String, String)], body: [UInt8]) async -> FalSimDeliveryResult {
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.httpBody = Data(body)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("fal-sim", forHTTPHeaderField: "User-Agent")
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        do {
            let (_, response) = try await session.data(for: request)
            return FalSimDeliveryResult(statusCode: (response as? HTTPURLResponse)?.statusCode, error: nil)
        } catch let error as URLError {
            return FalSimDeliveryResult(statusCode: nil, error: "URLError \(error.code.rawValue): \(error.localizedDescription)")
        } catch {
            return FalSimDeliveryResult(statusCode: nil, error: String(describing: error))
        }
    }
}
