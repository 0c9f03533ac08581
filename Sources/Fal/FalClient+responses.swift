import Foundation

extension FalClient {
    /// Maps a non-2xx response to a `FalError`, keeping status, `error_type` and body.
    static func error(for response: HTTPTransportResponse) -> FalError {
        let members = (try? RawJSON.members(of: response.body)) ?? []
        let detailRaw = members.first { $0.key == "detail" }?.value
        let errorType = members.first { $0.key == "error_type" }.flatMap { RawJSON.string($0.value) }
            ?? response.header("X-Fal-Error-Type")
        var details: [FalValidationDetail] = []
        var message = "HTTP \(response.status)"
        if let detailRaw {
            if let text = RawJSON.string(detailRaw) {
                message = text
            } else if let decoded = try? JSONDecoder().decode([FalValidationDetail].self, from: Data(detailRaw)) {
                details = decoded
                message = decoded.map { ($0.location.joined(separator: ".")) + ": " + $0.message }.joined(separator: "; ")
            }
        }
        let code: FalError.Code
        var userTimeout = false
        var reached = true
        switch response.status {
        case 401, 403:
            code = .unauthorized
            reached = false
        case 404: code = .notFound
        case 422: code = .validation
        case 429:
            code = .rateLimited
            reached = false
        case 502, 503: code = .unavailable
        case 504:
            code = .timeout
            userTimeout = response.header("X-Fal-Request-Timeout-Type")?.lowercased() == "user"
        case 200..<300: code = .badResponse
        default: code = .modelError
        }
        return FalError(
            code, message, httpStatus: response.status, errorType: errorType, body: response.body,
            details: details, mayHaveReachedFal: reached, isUserTimeout: userTimeout
        )
    }

    static func badResponse(_ message: String, _ response: HTTPTransportResponse) -> FalError {
        FalError(.badResponse, message, httpStatus: response.status, body: response.body)
    }

    static func queueRequest(from response: HTTPTransportResponse, model: String, queueURL: String) throws(FalError) -> FalQueueRequest {
        let decoded: SubmitBody
        do {
            decoded = try JSONDecoder().decode(SubmitBody.self, from: Data(response.body))
        } catch {
            throw badResponse("submit answer is not the expected JSON", response)
        }
        guard let requestID = decoded.request_id, !requestID.isEmpty else {
            throw badResponse("submit answer has no request_id", response)
        }
        let fallback = FalQueueRequest(fallbackFor: model, requestID: requestID, queueURL: queueURL)
        return FalQueueRequest(
            requestID: requestID,
            statusURL: decoded.status_url ?? fallback.statusURL,
            responseURL: decoded.response_url ?? fallback.responseURL,
            cancelURL: decoded.cancel_url ?? fallback.cancelURL,
            gatewayRequestID: decoded.gateway_request_id,
            queuePosition: decoded.queue_position
        )
    }

    static func status(from response: HTTPTransportResponse) throws(FalError) -> FalStatus {
        let decoded: StatusBody
        do {
            decoded = try JSONDecoder().decode(StatusBody.self, from: Data(response.body))
        } catch {
            throw badResponse("status answer is not the expected JSON", response)
        }
        guard let status = decoded.status else { throw badResponse("status answer has no status", response) }
        let state: FalStatus.State = switch status {
        case "IN_QUEUE": .inQueue(position: decoded.queue_position)
        case "IN_PROGRESS": .inProgress
        case "COMPLETED": .completed(error: decoded.error, errorType: decoded.error_type)
        default: .unknown(status)
        }
        return FalStatus(state: state, httpStatus: response.status, logs: decoded.logs ?? [], inferenceTime: decoded.metrics?.inference_time)
    }

    static func cancelOutcome(from response: HTTPTransportResponse) throws(FalError) -> FalCancelOutcome {
        let status = (try? RawJSON.members(of: response.body))?.first { $0.key == "status" }.flatMap { RawJSON.string($0.value) }
        switch response.status {
        case 200..<300, 400:
            switch status {
            case "OK": return .cancelled
            case "CANCELLATION_REQUESTED": return .cancellationRequested
            case "ALREADY_COMPLETED": return .alreadyCompleted
            case "NOT_FOUND": return .notFound
            case nil: break
            case let other?:
                if response.status != 400 { return .other(other) }
            }
            if response.status == 400 { return .alreadyCompleted }
            if response.status == 202 { return .cancellationRequested }
            return .cancelled
        case 404:
            return .notFound
        default:
            throw error(for: response)
        }
    }

    // Wire shapes; snake_case names match fal's JSON. Only `request_id` (and a status's
    // `status`) must be right: a strange optional member (a `queue_position` of `1e300` or
    // `-1`, a URL that is a number) is dropped, never the answer, so an accepted request id
    // is never lost to a detail.
    private struct SubmitBody: Decodable {
        var request_id: String?
        var status_url: String?
        var response_url: String?
        var cancel_url: String?
        var gateway_request_id: String?
        var queue_position: Int?

        private enum CodingKeys: String, CodingKey {
            case request_id, status_url, response_url, cancel_url, gateway_request_id, queue_position
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            request_id = try container.decodeIfPresent(String.self, forKey: .request_id)
            status_url = try? container.decodeIfPresent(String.self, forKey: .status_url)
            response_url = try? container.decodeIfPresent(String.self, forKey: .response_url)
            cancel_url = try? container.decodeIfPresent(String.self, forKey: .cancel_url)
            gateway_request_id = try? container.decodeIfPresent(String.self, forKey: .gateway_request_id)
            queue_position = queuePosition(in: container, forKey: .queue_position)
        }
    }

    private struct StatusBody: Decodable {
        struct Metrics: Decodable { var inference_time: Double? }
        var status: String?
        var queue_position: Int?
        var error: String?
        var error_type: String?
        var logs: [FalStatus.Log]?
        var metrics: Metrics?

        private enum CodingKeys: String, CodingKey {
            case status, queue_position, error, error_type, logs, metrics
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            status = try container.decodeIfPresent(String.self, forKey: .status)
            queue_position = queuePosition(in: container, forKey: .queue_position)
            error = try? container.decodeIfPresent(String.self, forKey: .error)
            error_type = try? container.decodeIfPresent(String.self, forKey: .error_type)
            // One strange entry drops that entry, not every line.
            logs = (try? container.decodeIfPresent([LossyLog].self, forKey: .logs))?.compactMap(\.log)
            metrics = try? container.decodeIfPresent(Metrics.self, forKey: .metrics)
        }
    }
}

/// A log entry, or nil when it is not one (no string `message`).
private struct LossyLog: Decodable {
    var log: FalStatus.Log?

    init(from decoder: any Decoder) throws {
        log = try? FalStatus.Log(from: decoder)
    }
}

/// A `queue_position` that is a whole number from 0 up; nil for anything else (negative, a
/// fraction, beyond `Int`, not a number).
private func queuePosition<Key: CodingKey>(in container: KeyedDecodingContainer<Key>, forKey key: Key) -> Int? {
    guard let position = try? container.decodeIfPresent(Int.self, forKey: key), position >= 0 else { return nil }
    return position
}
