/// A seeded fault plan (`fal-sim --chaos-seed N`): each submit's faults are drawn from
/// hash(seed, model, prompt) and the number of earlier submits of that same model and prompt, so
/// a run is replayed by its seed whatever order requests arrive in (a driver gives every job a
/// prompt of its own). The faults drawn are recorded with the request like any other.
///
/// Per request (model + prompt), independently:
/// - outcome: `fail` (a 422, `fail` rate), `infra-error` (503 `runner_disconnected`,
///   `infra-error` rate), else the model's output;
/// - submit answer (one of, by rate): `refuse`: `submit-429` + `retry-after=1` for the first 1, 2
///   or 5 submits (5 outlasts a client's retries, so the caller must send it again later);
///   `submit-503`: the first submit answers 503 and no job is created; `after-create`:
///   `submit-500-after-create`; `submit-stall`: the job is created and the answer stalls;
/// - webhook (one of): `drop` (only when the submit answer is a 200: otherwise nobody could ever
///   learn the request id), `duplicate` (two copies at once), `repeat` (a second copy 0.2-2 s
///   later); then `delay` (1.5-4 s, past a reconciler's first check) or else `jitter` (0-0.4 s,
///   so webhooks of different requests arrive out of order);
/// - `status-500` (first 1-3 status calls fail), `result-500` (first 1-2 result calls fail).
public struct FalSimChaosPlan: Sendable, Equatable {
    public var seed: UInt64
    /// Rates by name (see `defaultRates`), each 0...1.
    public var rates: [String: Double]

    public static let defaultRates: [String: Double] = [
        "fail": 0.12, "infra-error": 0.08,
        "refuse": 0.12, "submit-503": 0.03, "after-create": 0.08, "submit-stall": 0.03,
        "drop": 0.10, "duplicate": 0.12, "repeat": 0.10, "delay": 0.12, "jitter": 0.5,
        "status-500": 0.15, "result-500": 0.10,
    ]

    /// Rates not given keep their default; throws on an unknown name or a rate outside 0...1.
    public init(seed: UInt64, rates: [String: Double] = [:]) throws(FalSimError) {
        self.seed = seed
        var merged = Self.defaultRates
        for (name, rate) in rates {
            guard merged[name] != nil else {
                throw FalSimError.badConfiguration("unknown chaos rate '\(name)'; known: \(Self.defaultRates.keys.sorted().joined(separator: ", "))")
            }
            guard rate.isFinite, (0...1).contains(rate) else { throw FalSimError.badConfiguration("chaos rate \(name) must lie in 0...1") }
            merged[name] = rate
        }
        self.rates = merged
    }

    /// One line naming the seed and the rates, for logs.
    public var summary: String {
        "chaos seed \(seed), rates " + rates.keys.sorted().map { "\($0)=\(rates[$0] ?? 0)" }.joined(separator: " ")
    }

    private func rate(_ name: String) -> Double { rates[name] ?? 0 }

    /// The first of `names` whose cumulative rate exceeds `u`; nil when none does.
    private func pick(_ u: Double, _ names: [String]) -> String? {
        var threshold = 0.0
        for name in names {
            threshold += rate(name)
            if u < threshold { return name }
        }
        return nil
    }

    /// The fault names of the `submitIndex`-th (from 0) submit of `model` with `prompt`.
    public func faults(model: String, prompt: String?, submitIndex: Int) -> [String] {
        var generator = SplitMix64(state: Self.hash(seed: seed, model: model, prompt: prompt ?? ""))
        // Always the same number of draws, so one rate never shifts another's decisions.
        let u = (0..<10).map { _ in generator.nextUnit() }
        var names: [String] = []

        if u[0] < rate("fail") {
            names.append("fail")
        } else if u[0] < rate("fail") + rate("infra-error") {
            names.append("infra-error")
        }

        var answeredOK = true
        switch pick(u[1], ["refuse", "submit-503", "after-create", "submit-stall"]) {
        case "refuse":
            let refusals = u[2] < 0.5 ? 1 : (u[2] < 0.8 ? 2 : 5)
            if submitIndex < refusals { names += ["submit-429", "retry-after=1"] }
        case "submit-503":
            if submitIndex == 0 { names.append("submit-503") }
        case "after-create":
            names.append("submit-500-after-create")
            answeredOK = false
        case "submit-stall":
            names.append("submit-stall")
            answeredOK = false
        default:
            break
        }

        switch pick(u[3], answeredOK ? ["drop", "duplicate", "repeat"] : ["duplicate", "repeat"]) {
        case "drop": names.append("drop-webhook")
        case "duplicate": names.append("duplicate-webhook")
        case "repeat": names.append("repeat-webhook=\(200 + Int(u[4] * 1800))")
        default: break
        }
        if u[5] < rate("delay") {
            names.append("delay-webhook=\(1500 + Int(u[6] * 2500))")
        } else if u[5] < rate("delay") + rate("jitter") {
            names.append("delay-webhook=\(Int(u[6] * 400))")
        }

        if u[7] < rate("status-500") { names.append("status-500=\(1 + Int(u[9] * 3))") }
        if u[8] < rate("result-500") { names.append("result-500=\(1 + Int(u[9] * 2))") }
        return names
    }

    /// FNV-1a (64 bit) over the seed's 8 bytes (little endian), the model, a newline, the prompt.
    static func hash(seed: UInt64, model: String, prompt: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        for shift in stride(from: 0, to: 64, by: 8) { mix(UInt8(truncatingIfNeeded: seed >> UInt64(shift))) }
        for byte in model.utf8 { mix(byte) }
        mix(0x0A)
        for byte in prompt.utf8 { mix(byte) }
        return hash
    }
}

/// SplitMix64: a small, well-mixed generator whose sequence is fixed by its state.
struct SplitMix64: Sendable {
    var state: UInt64

    mutating func next() -> UInt64 {
        state = state &+ 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// A number in 0..<1 (53 random bits).
    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(UInt64(1) << 53) }
}
