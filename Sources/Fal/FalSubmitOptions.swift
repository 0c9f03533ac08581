/// Optional submit settings, each sent as one of fal's request headers.
public struct FalSubmitOptions: Sendable, Hashable {
    public enum Priority: String, Sendable, Hashable {
        case normal, low
    }

    /// `X-Fal-Queue-Priority`.
    public var priority: Priority?
    /// `X-Fal-Request-Timeout`: a deadline to *start* running; on expiry fal answers 504 with
    /// `X-Fal-Request-Timeout-Type: user`. Sent in whole seconds, rounded up.
    public var startTimeout: Duration?
    /// `X-Fal-Object-Lifecycle-Preference: {"expiration_duration_seconds":N}`: how long the
    /// output media lives.
    public var mediaLifetime: Duration?
    /// Extra headers (e.g. fal-sim's `X-Fal-Sim-Fault`). Never put credentials here.
    public var extraHeaders: [String: String]

    public init(
        priority: Priority? = nil,
        startTimeout: Duration? = nil,
        mediaLifetime: Duration? = nil,
        extraHeaders: [String: String] = [:]
    ) {
        self.priority = priority
        self.startTimeout = startTimeout
        self.mediaLifetime = mediaLifetime
        self.extraHeaders = extraHeaders
    }

    /// The headers these options add to a submit.
    var headers: [String: String] {
        var headers = extraHeaders
        if let priority { headers["X-Fal-Queue-Priority"] = priority.rawValue }
        if let startTimeout { headers["X-Fal-Request-Timeout"] = String(Self.wholeSeconds(startTimeout)) }
        if let mediaLifetime {
            headers["X-Fal-Object-Lifecycle-Preference"] = "{\"expiration_duration_seconds\":\(Self.wholeSeconds(mediaLifetime))}"
        }
        return headers
    }

    static func wholeSeconds(_ duration: Duration) -> Int64 {
        let parts = duration.components
        return max(0, parts.seconds + (parts.attoseconds > 0 ? 1 : 0))
    }
}
