import ArgumentParser
import NIOCore

/// `post`: prepared requests over keep-alive connections; throughput, statuses and latency.
struct PostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "post",
        abstract: "Send prepared HTTP requests closed-loop (or paced) and report throughput and latency."
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "Port on 127.0.0.1 to send to.") var port: Int
    @Option(help: "Requests file: records `<key> <length>\\n<raw HTTP/1.1 request>`.") var requests: String
    @Option(help: "Keep-alive connections.") var concurrency: Int
    @Option(help: "Requests per second (0: the next request as soon as a response arrives).") var rate: Int = 0

    func validate() throws {
        try validatePort(port)
        try validateCount(concurrency, "--concurrency", atLeast: 1)
        try validateCount(rate, "--rate", atLeast: 0)
    }

    func run() throws {
        let clock = ToolClock()
        let records = try Record.load(requests)
        let (port, concurrency, rate) = (port, concurrency, rate)
        try LoadLoop.run(timeout: common.timeout, clock: clock) { bench, done in
            let sender = Sender(bench, records: records, rate: rate)
            sender.onDone = { done.succeed(sender.result) }
            sender.open(port: port, concurrency: concurrency).assumeIsolated().whenComplete { outcome in
                switch outcome {
                case .success: sender.run()
                case .failure(let error): done.succeed(.failure(error))
                }
            }
            return {
                sender.end = now()
                return sender.result
            }
        }
    }
}

func validatePort(_ port: Int, _ name: String = "--port") throws {
    guard (1...65535).contains(port) else { throw ValidationError("\(name) must be a port number (1-65535)") }
}

func validateCount(_ value: Int, _ name: String, atLeast minimum: Int) throws {
    guard value >= minimum, value <= 10_000_000 else { throw ValidationError("\(name) must be \(minimum) to 10000000") }
}
