/// Settings of a `FalClient`.
public struct FalClientConfiguration: Sendable {
    /// Deadlines for whole calls, retries included.
    public struct Timeouts: Sendable, Hashable {
        public var submit: Duration
        public var status: Duration
        public var result: Duration
        public var cancel: Duration
        /// The longest one status/result/cancel attempt may take before it is abandoned and
        /// (budget allowing) retried. A submit attempt always gets the whole remaining deadline.
        public var attempt: Duration

        public init(
            submit: Duration = .seconds(30),
            status: Duration = .seconds(15),
            result: Duration = .seconds(60),
            cancel: Duration = .seconds(15),
            attempt: Duration = .seconds(10)
        ) {
            self.submit = submit
            self.status = status
            self.result = result
            self.cancel = cancel
            self.attempt = attempt
        }
    }

    /// fal's queue base URL; tests and local runs point it at fal-sim.
    public var queueURL: String
    /// The fal key `key_id:key_secret`. A secret: never logged, never in an error message.
    public var key: String?
    public var timeouts: Timeouts
    public var retry: FalRetryPolicy

    public init(
        queueURL: String = "https://queue.fal.run",
        key: String? = nil,
        timeouts: Timeouts = Timeouts(),
        retry: FalRetryPolicy = .default
    ) {
        self.queueURL = queueURL
        self.key = key
        self.timeouts = timeouts
        self.retry = retry
    }
}

extension FalClientConfiguration: CustomStringConvertible {
    /// Redacts the key.
    public var description: String {
        "FalClientConfiguration(queueURL: \(queueURL), key: \(key == nil ? "nil" : "<redacted>"), timeouts: \(timeouts), retry: \(retry))"
    }
}
