/// What fal said to a cancel. A running request may finish anyway: re-check its status.
public enum FalCancelOutcome: Sendable, Hashable {
    /// `OK`: cancelled.
    case cancelled
    /// `CANCELLATION_REQUESTED`: asked; the request may still complete.
    case cancellationRequested
    /// `ALREADY_COMPLETED` (historically with HTTP 400).
    case alreadyCompleted
    /// `NOT_FOUND`, or 404: fal does not know the request.
    case notFound
    /// A value this client does not know, as sent.
    case other(String)
}
