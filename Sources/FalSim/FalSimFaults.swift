import Foundation

/// The faults applied to one request, parsed from names:
///
/// - `fail`: the model fails; result 422, ERROR webhook with the 422 body.
/// - `payload-error`: ERROR webhook with `payload: null` and `payload_error` (the result is fine).
/// - `drop-webhook`: no webhook is sent.
/// - `duplicate-webhook`: the webhook is delivered twice (two independent deliveries).
/// - `delay-webhook=<ms>`: the first delivery waits that long after completion (at most 1 hour).
/// - `hold-webhook`: the webhook waits until released (`FalSim.releaseHeldWebhooks(reverse:)`,
///   `POST /_sim/webhooks/release?order=reverse`): deliver webhooks in any order.
/// - `hold-run`: the request runs (IN_PROGRESS, holding its concurrency slot) until released
///   (`FalSim.releaseHeldRuns()`), then finishes as usual: a queue blocked for as long as a test needs.
/// - `submit-429`, `submit-500`, `submit-503`: submit answers that status; no job is created.
/// - `retry-after=<text>`: that error answer carries `Retry-After: <text>`, as sent (any text
///   without control characters, up to 256 bytes: `120`, `1e300`, `nan`, an HTTP date). In the
///   `X-Fal-Sim-Fault` header faults are split at commas, so an HTTP date needs a fault rule.
/// - `submit-stall`: the job is created and runs, the submit answer stalls (`stallDuration`).
/// - `status-stall`: status answers stall.
/// - `expire-result`: the result is gone (404) as soon as the request completes.
/// - `wrong-signature`: webhooks are signed with a key not in the JWKS.
/// - `submit-500-after-create`: the job is created and runs (webhook, result), but the submit is
///   answered 500: the caller cannot know fal has it (an unknown outcome, never to be resent).
/// - `status-500[=<n>]`, `result-500[=<n>]`: the first n (default 2) status / result calls of
///   the request answer 500; later ones answer normally.
/// - `infra-error[=<type>]`: the request ends with an infrastructure error: the result is 503
///   `{"detail", "error_type"}` with `X-Fal-Error-Type` (default `runner_disconnected`), the
///   webhook is ERROR with that body, the status COMPLETED with `error` and `error_type`.
/// - `repeat-webhook=<ms>`: a second copy of the webhook follows the first after that long (at
///   most 1 hour): the same webhook again once the first was handled.
/// - `log-storm`: while it runs, every status with logs carries `logStormLines` log lines, all
///   new since the last poll (a model that prints a line per step): a flood of logs.
struct FalSimFaults: Sendable, Equatable {
    var fail = false
    var payloadError = false
    var dropWebhook = false
    var duplicateWebhook = false
    var webhookDelay: Duration?
    var holdWebhook = false
    var holdRun = false
    var submitStatus: Int?
    var retryAfter: String?
    var submitStall = false
    var statusStall = false
    var expireResult = false
    var wrongSignature = false
    /// `submit-500-after-create`: the status the submit is answered with; the job exists.
    var submitAfterCreateStatus: Int?
    var statusErrors = 0
    var resultErrors = 0
    var infraErrorType: String?
    var repeatWebhook: Duration?
    var logStorm = false

    /// The longest `delay-webhook`.
    static let maximumDelayMilliseconds = 3_600_000

    init() {}

    /// Parses fault names; throws on an unknown one.
    init(names: [String]) throws(FalSimError) {
        for name in names {
            try apply(name.trimmingCharacters(in: .whitespaces))
        }
    }

    static let knownNames = [
        "fail", "payload-error", "drop-webhook", "duplicate-webhook", "delay-webhook=<ms>", "hold-webhook",
        "submit-429", "submit-500", "submit-503", "retry-after=<text>", "submit-stall", "status-stall", "expire-result", "wrong-signature",
        "submit-500-after-create", "status-500[=<n>]", "result-500[=<n>]", "infra-error[=<type>]", "repeat-webhook=<ms>", "log-storm",
    ]

    /// The most `status-500=<n>` / `result-500=<n>` calls.
    static let maximumErrorCalls = 1000

    private mutating func apply(_ name: String) throws(FalSimError) {
        switch name {
        case "": break
        case "fail": fail = true
        case "payload-error": payloadError = true
        case "drop-webhook": dropWebhook = true
        case "duplicate-webhook": duplicateWebhook = true
        case "hold-webhook", "reverse-webhooks": holdWebhook = true
        case "hold-run": holdRun = true
        case "log-storm": logStorm = true
        case "submit-429": submitStatus = 429
        case "submit-500": submitStatus = 500
        case "submit-503": submitStatus = 503
        case "submit-stall": submitStall = true
        case "status-stall": statusStall = true
        case "expire-result": expireResult = true
        case "wrong-signature": wrongSignature = true
        case "submit-500-after-create": submitAfterCreateStatus = 500
        case "status-500": statusErrors = 2
        case "result-500": resultErrors = 2
        case "infra-error": infraErrorType = "runner_disconnected"
        default:
            let delayPrefix = "delay-webhook=", retryAfterPrefix = "retry-after="
            if name.hasPrefix(delayPrefix), let ms = Int(name.dropFirst(delayPrefix.count)), (0...Self.maximumDelayMilliseconds).contains(ms) {
                webhookDelay = .milliseconds(ms)
            } else if let ms = Self.count(name, prefix: "repeat-webhook=", upTo: Self.maximumDelayMilliseconds) {
                repeatWebhook = .milliseconds(ms)
            } else if let n = Self.count(name, prefix: "status-500=", upTo: Self.maximumErrorCalls) {
                statusErrors = n
            } else if let n = Self.count(name, prefix: "result-500=", upTo: Self.maximumErrorCalls) {
                resultErrors = n
            } else if name.hasPrefix("infra-error=") {
                let type = name.dropFirst("infra-error=".count)
                guard (1...64).contains(type.utf8.count), type.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                    throw FalSimError.unknownFault(name)
                }
                infraErrorType = String(type)
            } else if name.hasPrefix(retryAfterPrefix) {
                let value = String(name.dropFirst(retryAfterPrefix.count))
                guard value.utf8.count <= 256, !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                    throw FalSimError.unknownFault(name)
                }
                retryAfter = value
            } else {
                throw FalSimError.unknownFault(name)
            }
        }
    }

    /// The number after `prefix` when it lies in 0...limit (ASCII digits only).
    private static func count(_ name: String, prefix: String, upTo limit: Int) -> Int? {
        guard name.hasPrefix(prefix) else { return nil }
        let digits = name.dropFirst(prefix.count)
        guard (1...7).contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(digits), value <= limit else { return nil }
        return value
    }
}
