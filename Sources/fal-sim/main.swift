import FalSim
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// fal-sim: a local stand-in for fal.ai's queue API. Flags override the defaults of
/// `FalSimConfiguration`; `--help` lists them.
let usage = """
    usage: fal-sim [--host H] [--port P] [--public-url URL] [--key KEY | --no-key] [--user-id ID]
                   [--queue-delay-ms N] [--run-delay-ms N] [--concurrency N] [--webhook-retry-scale X]
                   [--heartbeat-ms N] [--stall-ms N] [--fault NAME]...
                   [--chaos-seed N [--chaos-rate NAME=X]...]
      --chaos-seed N: draw each request's faults from hash(N, model, prompt) (FalSimChaosPlan);
      --chaos-rate NAME=X: change one rate of the plan (0...1), e.g. --chaos-rate drop=0.2
    """

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("fal-sim: \(message)\n\(usage)\n".utf8))
    exit(2)
}

func value(_ flag: String, _ arguments: inout ArraySlice<String>) -> String {
    guard let next = arguments.popFirst() else { fail("\(flag) needs a value") }
    return next
}
func number(_ flag: String, _ arguments: inout ArraySlice<String>) -> Int {
    guard let parsed = Int(value(flag, &arguments)), parsed >= 0 else { fail("\(flag) needs a non-negative integer") }
    return parsed
}
func parseConfiguration(_ commandLine: [String]) -> FalSimConfiguration {
    var configuration = FalSimConfiguration(port: 8090)
    var arguments = commandLine.dropFirst()
    var chaosSeed: UInt64?
    var chaosRates: [String: Double] = [:]
    while let flag = arguments.popFirst() {
        switch flag {
        case "--host": configuration.host = value(flag, &arguments)
        case "--port": configuration.port = number(flag, &arguments)
        case "--public-url": configuration.publicURL = value(flag, &arguments)
        case "--key": configuration.key = value(flag, &arguments)
        case "--no-key": configuration.key = nil
        case "--user-id": configuration.userID = value(flag, &arguments)
        case "--queue-delay-ms": configuration.queueDelay = .milliseconds(number(flag, &arguments))
        case "--run-delay-ms": configuration.runDelay = .milliseconds(number(flag, &arguments))
        case "--concurrency": configuration.concurrency = number(flag, &arguments)
        case "--heartbeat-ms": configuration.statusStreamHeartbeat = .milliseconds(number(flag, &arguments))
        case "--webhook-retry-scale":
            guard let scale = Double(value(flag, &arguments)), scale >= 0 else { fail("--webhook-retry-scale needs a number") }
            configuration.webhookRetryScale = scale
        case "--fault": configuration.faults.append(value(flag, &arguments))
        case "--stall-ms": configuration.stallDuration = .milliseconds(number(flag, &arguments))
        case "--chaos-seed":
            guard let seed = UInt64(value(flag, &arguments)) else { fail("--chaos-seed needs a non-negative integer") }
            chaosSeed = seed
        case "--chaos-rate":
            let pair = value(flag, &arguments).split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, let rate = Double(pair[1]) else { fail("--chaos-rate needs NAME=X") }
            chaosRates[pair[0]] = rate
        case "--help", "-h":
            print(usage)
            exit(0)
        default: fail("unknown flag \(flag)")
        }
    }
    if let chaosSeed {
        do {
            configuration.chaos = try FalSimChaosPlan(seed: chaosSeed, rates: chaosRates)
        } catch {
            fail(error.message)
        }
    } else if !chaosRates.isEmpty {
        fail("--chaos-rate needs --chaos-seed")
    }
    return configuration
}

/// Writes a line to stdout unbuffered, so scripts reading the URL see it at once.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

let configuration = parseConfiguration(CommandLine.arguments)
var logger = Logger(label: "fal-sim")
logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
let sim = FalSim(configuration: configuration, logger: logger)
let group = ServiceGroup(services: [sim], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
do {
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        tasks.addTask {
            // Nothing to announce when the server could not bind (it then reports port 0).
            guard await sim.boundPort != nil else { return }
            say("fal-sim listening on \(await sim.baseURL.absoluteString)")
            say("fal-sim JWKS at \(await sim.jwksURL.absoluteString)")
            if let chaos = configuration.chaos { say("fal-sim \(chaos.summary)") }
        }
        for try await _ in tasks {}
    }
} catch {
    // One line, no crash report: a port in use is an everyday mistake, not a bug.
    FileHandle.standardError.write(Data("fal-sim: \(FalSim.describeStartFailure(error, host: configuration.host, port: configuration.port))\n".utf8))
    exit(1)
}
