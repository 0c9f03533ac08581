/// Faults added to the requests that match, checked at submit (`POST /_sim/faults` takes the
/// same JSON: `{"model"?: "...", "promptContains"?: "...", "faults": ["..."], "times"?: N}`).
public struct FalSimFaultRule: Sendable, Codable, Equatable {
    /// Exact model id to match; nil matches every model.
    public var model: String?
    /// Substring the input's `prompt` must contain; nil matches every input.
    public var promptContains: String?
    /// Fault names (see `FalSimFaults`).
    public var faults: [String]
    /// How many submits the rule applies to; nil = every one.
    public var times: Int?

    public init(model: String? = nil, promptContains: String? = nil, faults: [String], times: Int? = nil) {
        self.model = model
        self.promptContains = promptContains
        self.faults = faults
        self.times = times
    }

    func matches(model: String, prompt: String?) -> Bool {
        if let wanted = self.model, wanted != model { return false }
        if let needle = promptContains {
            guard let prompt, prompt.contains(needle) else { return false }
        }
        return true
    }
}
