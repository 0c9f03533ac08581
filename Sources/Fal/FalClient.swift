import Foundation
import Logging

/// A client for fal's queue API: submit, status, result, cancel.
///
/// Every call has a deadline (`FalClientConfiguration.Timeouts`). Status, result and cancel
/// retry on 429, 502, 503, 504 and connection failures. A submit retries only when it surely
/// did not reach fal (no connection, or 429): fal has no idempotency key, so a duplicate
/// submit is a second billed job.
public struct FalClient: Sendable {
    public let configuration: FalClientConfiguration
    let transport: any HTTPTransport
    let logger: Logger
    let sleep: @Sendable (Duration) async throws -> Void
    let random: @Sendable () -> Double

    /// - Parameters:
    ///   - sleep: waits between retries; tests pass one that returns at once.
    ///   - random: jitter source in `0..<1`.
    public init(
        configuration: FalClientConfiguration,
        transport: any HTTPTransport = ConnectGuardTransport(URLSessionTransport()),
        logger: Logger = Logger(label: "fal"),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        self.configuration = configuration
        self.transport = transport
        self.logger = logger
        self.sleep = sleep
        self.random = random
    }

    /// `POST {queueURL}/{model}?fal_webhook=…` with the input JSON object.
    ///
    /// Returns the request id and the URLs fal returned (built by fal's owner/app rule only
    /// where a field is missing).
    public func submit(
        model: String,
        input: [UInt8],
        webhookURL: String? = nil,
        options: FalSubmitOptions = FalSubmitOptions()
    ) async throws(FalError) -> FalQueueRequest {
        guard RawJSON.isObject(input) else {
            throw FalError(.invalidRequest, "input is not a JSON object", mayHaveReachedFal: false)
        }
        var text = Self.trimmingSlashes(configuration.queueURL) + "/" + Self.trimmingSlashes(model)
        if let webhookURL {
            text += "?fal_webhook=" + Self.percentEncoded(webhookURL)
        }
        guard let url = URL(string: text), !model.isEmpty else {
            throw FalError(.invalidRequest, "cannot form a submit URL for model \(model)", mayHaveReachedFal: false)
        }
        var headers = options.headers
        headers["Content-Type"] = "application/json"
        headers["Accept"] = "application/json"
        let request = HTTPTransportRequest(method: "POST", url: url, headers: authorized(headers), body: input)
        let response = try await perform(request, operation: .submit, model: model)
        guard response.isSuccess else { throw Self.error(for: response) }
        return try Self.queueRequest(from: response, model: model, queueURL: configuration.queueURL)
    }

    /// `GET status_url?logs=0|1`. 202 (queued, running) and 200 (done) both carry a status.
    public func status(_ request: FalQueueRequest, logs: Bool = false) async throws(FalError) -> FalStatus {
        let url = try Self.url(request.statusURL, adding: "logs", logs ? "1" : "0")
        let http = HTTPTransportRequest(method: "GET", url: url, headers: authorized(["Accept": "application/json"]))
        let response = try await perform(http, operation: .status, model: nil)
        guard response.isSuccess else { throw Self.error(for: response) }
        return try Self.status(from: response)
    }

    /// `GET response_url`: the output's raw bytes, exactly as fal sent them. A failed request
    /// throws the model's HTTP status and body (`.validation` with details for 422); a result
    /// that expired or never existed throws `.notFound`.
    public func result(_ request: FalQueueRequest) async throws(FalError) -> [UInt8] {
        let url = try Self.url(request.responseURL)
        let http = HTTPTransportRequest(method: "GET", url: url, headers: authorized(["Accept": "application/json"]))
        let response = try await perform(http, operation: .result, model: nil)
        guard response.isSuccess else { throw Self.error(for: response) }
        return response.body
    }

    /// `PUT cancel_url`. A running request may finish anyway: re-check its status.
    public func cancel(_ request: FalQueueRequest) async throws(FalError) -> FalCancelOutcome {
        let url = try Self.url(request.cancelURL)
        let http = HTTPTransportRequest(method: "PUT", url: url, headers: authorized(["Accept": "application/json"]))
        let response = try await perform(http, operation: .cancel, model: nil)
        return try Self.cancelOutcome(from: response)
    }

    private func authorized(_ headers: [String: String]) -> [String: String] {
        var headers = headers
        if let key = configuration.key {
            headers["Authorization"] = "Key " + key
        }
        return headers
    }
}
