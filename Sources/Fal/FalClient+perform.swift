import Foundation
import Metrics
import Logging

extension FalClient {
    enum Operation: String, Sendable {
        case submit, status, result, cancel
    }

    func callTimeout(_ operation: Operation) -> Duration {
        switch operation {
        case .submit: configuration.timeouts.submit
        case .status: configuration.timeouts.status
        case .result: configuration.timeouts.result
        case .cancel: configuration.timeouts.cancel
        }
    }

    /// Sends `request` with the operation's deadline and retry rule; returns the last response
    /// (which may be a non-retryable error status) or throws when none could be had.
    func perform(_ request: HTTPTransportRequest, operation: Operation, model: String?) async throws(FalError) -> HTTPTransportResponse {
        let clock = ContinuousClock()
        let start = clock.now
        defer {
            // `clapper_fal_request_duration_seconds{operation,model}`: the whole call, retries included.
            Timer(label: "clapper_fal_request_duration_seconds", dimensions: [("operation", operation.rawValue), ("model", model ?? "-")])
                .record(duration: start.duration(to: clock.now))
        }
        let deadline = start + callTimeout(operation)
        var logger = self.logger
        logger[metadataKey: "fal_operation"] = "\(operation.rawValue)"
        if let model { logger[metadataKey: "fal_model"] = "\(model)" }
        var attempt = 0
        // The retry budget counts waits as requested (not as measured), so it holds even with
        // an injected sleep that does not really wait.
        var requestedWaits = Duration.zero
        var measuredWaits = Duration.zero
        while true {
            attempt += 1
            if Task.isCancelled {
                throw FalError(.cancelled, "cancelled before attempt \(attempt)", mayHaveReachedFal: attempt > 1)
            }
            let remaining = start.duration(to: deadline) - start.duration(to: clock.now)
            guard remaining > .zero else {
                throw FalError(.timeout, "\(operation.rawValue) deadline passed after \(attempt - 1) attempt(s)", mayHaveReachedFal: attempt > 1)
            }
            let attemptTimeout = operation == .submit ? remaining : min(remaining, configuration.timeouts.attempt)
            logger.debug("fal request", metadata: ["fal_attempt": "\(attempt)"])

            let failure: FalError
            let retryAfter: Duration?
            do {
                let response = try await withDeadline(attemptTimeout) { () async throws(HTTPTransportError) -> HTTPTransportResponse in
                    try await transport.send(request, timeout: attemptTimeout)
                }
                guard shouldRetry(response, operation: operation) else {
                    logger.debug("fal response", metadata: ["fal_http_status": "\(response.status)"])
                    return response
                }
                failure = Self.error(for: response)
                retryAfter = Self.retryAfter(response.header("Retry-After"))
            } catch {
                let code: FalError.Code = switch error.code {
                case .timedOut: .timeout
                case .cancelled: .cancelled
                case .invalidRequest: .invalidRequest
                default: .unavailable
                }
                failure = FalError(code, "\(operation.rawValue) failed: \(error.message) (\(error.code))", mayHaveReachedFal: error.mayHaveReachedServer)
                guard Self.shouldRetry(error, operation: operation) else {
                    logger.warning("fal request failed", metadata: ["fal_error": "\(error.code)", "fal_attempt": "\(attempt)"])
                    throw failure
                }
                retryAfter = nil
            }
            let elapsed = start.duration(to: clock.now) - measuredWaits + requestedWaits
            let budget = min(configuration.retry.totalBudget, callTimeout(operation))
            var policy = configuration.retry
            policy.totalBudget = budget
            guard let delay = policy.delay(afterAttempt: attempt, elapsed: elapsed, retryAfter: retryAfter, random: random()) else {
                logger.warning("fal request failed, not retrying", metadata: ["fal_error": "\(failure.code)", "fal_attempt": "\(attempt)"])
                throw failure
            }
            logger.info("fal request failed, retrying", metadata: [
                "fal_error": "\(failure.code)", "fal_attempt": "\(attempt)", "fal_delay_ms": "\(delay.milliseconds)",
            ])
            requestedWaits += delay
            let sleepStart = clock.now
            do {
                try await sleep(delay)
            } catch {
                throw FalError(.cancelled, "cancelled while waiting to retry", mayHaveReachedFal: failure.mayHaveReachedFal)
            }
            measuredWaits += sleepStart.duration(to: clock.now)
        }
    }

    /// Whether a response is worth another attempt under this operation's rule.
    func shouldRetry(_ response: HTTPTransportResponse, operation: Operation) -> Bool {
        switch response.status {
        case 429:
            return true
        case 502, 503:
            return operation != .submit
        case 504:
            return operation != .submit && response.header("X-Fal-Request-Timeout-Type")?.lowercased() != "user"
        default:
            return false
        }
    }

    static func shouldRetry(_ error: HTTPTransportError, operation: Operation) -> Bool {
        if error.code == .invalidRequest || error.code == .cancelled { return false }
        if operation == .submit { return !error.mayHaveReachedServer }
        return true
    }

    /// Runs `body`, giving up with `.timedOut` when `timeout` passes first, or `.cancelled` when
    /// the caller is cancelled. The answer does not wait for `body` to end: it runs in a task of
    /// its own that is cancelled and left to finish (the transport has the timeout itself too).
    /// Waiting for it proved unsafe: URLSession on Linux can fail to return from a request
    /// cancelled just as its own timeout fires, which held the caller, and its submit, forever.
    func withDeadline(
        _ timeout: Duration,
        _ body: @escaping @Sendable () async throws(HTTPTransportError) -> HTTPTransportResponse
    ) async throws(HTTPTransportError) -> HTTPTransportResponse {
        let race = DeadlineRace()
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                race.set(continuation)
                let work = Task {
                    do throws(HTTPTransportError) {
                        race.finish(.success(try await body()))
                    } catch {
                        race.finish(.failure(error))
                    }
                }
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    if !Task.isCancelled { race.finish(.failure(.timedOut("no response within \(timeout)"))) }
                }
                race.whenFinished { work.cancel(); timer.cancel() }
            }
        } onCancel: {
            race.finish(.failure(HTTPTransportError(.cancelled, mayHaveReachedServer: true, "cancelled")))
        }
        return try result.get()
    }

    /// The longest wait a `Retry-After` can ask for; larger values (`1e300`, a date in year 9999)
    /// are cut to it. Far beyond any retry budget, so such an answer simply ends the retries.
    static let maxRetryAfter: Duration = .seconds(24 * 3600)

    /// `Retry-After` as seconds (`120`, also `1.5` or `1e3`) or an HTTP date, clamped to
    /// `0...maxRetryAfter`; nil for anything else (`nan`, `inf`, hex, negative, junk).
    static func retryAfter(_ value: String?) -> Duration? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty, value.utf8.count <= 64 else { return nil }
        let decimal = value.utf8.allSatisfy { byte in
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") || byte == UInt8(ascii: "+")
        }
        if decimal, let first = value.utf8.first, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) {
            guard let seconds = Double(value) else { return nil }
            return clampedRetryAfter(seconds: seconds)
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return clampedRetryAfter(seconds: date.timeIntervalSinceNow)
    }

    /// Seconds (any `Double`, infinite included) as a wait in `0...maxRetryAfter`, whole
    /// milliseconds; nil for NaN. Never converts an unchecked value to an integer.
    static func clampedRetryAfter(seconds: Double) -> Duration? {
        guard !seconds.isNaN else { return nil }
        let maxMilliseconds = maxRetryAfter.milliseconds
        let milliseconds = Int64(exactly: (min(max(seconds, 0), Double(maxMilliseconds) / 1000) * 1000).rounded(.down)) ?? maxMilliseconds
        return .milliseconds(min(milliseconds, maxMilliseconds))
    }

    static func trimmingSlashes(_ text: String) -> String {
        var text = Substring(text)
        while text.hasSuffix("/") { text = text.dropLast() }
        while text.hasPrefix("/") { text = text.dropFirst() }
        return String(text)
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters.
    static func percentEncoded(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)..<Unicode.Scalar(128)))
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    static func url(_ text: String, adding name: String? = nil, _ value: String? = nil) throws(FalError) -> URL {
        guard var components = URLComponents(string: text), components.scheme != nil, components.host != nil else {
            throw FalError(.invalidRequest, "not a usable URL", mayHaveReachedFal: false)
        }
        if let name, let value {
            var items = (components.queryItems ?? []).filter { $0.name != name }
            items.append(URLQueryItem(name: name, value: value))
            components.queryItems = items
        }
        guard let url = components.url else {
            throw FalError(.invalidRequest, "not a usable URL", mayHaveReachedFal: false)
        }
        return url
    }
}

extension Duration {
    var milliseconds: Int64 {
        let parts = components
        return parts.seconds * 1000 + parts.attoseconds / 1_000_000_000_000_000
    }
}
