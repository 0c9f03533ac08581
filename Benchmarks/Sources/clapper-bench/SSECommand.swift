import ArgumentParser
import NIOCore

/// `sse`: webhook -> SSE latency. Stream k is the job of request key k; the first `event: job`
/// line on it after its webhook was sent is the delivery.
struct SSECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sse",
        abstract: "Open one SSE stream per job, send each job's webhook at a rate, time each delivery."
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "Port of the SSE streams.") var port: Int
    @Option(help: "Paths file: lines `<key> <path>`, one stream each.") var paths: String
    @Option(help: "Port the webhooks are sent to.") var postPort: Int
    @Option(help: "Webhooks: records `<key> <length>\\n<raw HTTP/1.1 request>`.") var requests: String
    @Option(help: "Keep-alive connections sending webhooks.") var concurrency: Int
    @Option(help: "Webhooks per second.") var rate: Int

    func validate() throws {
        try validatePort(port)
        try validatePort(postPort, "--post-port")
        try validateCount(concurrency, "--concurrency", atLeast: 1)
        try validateCount(rate, "--rate", atLeast: 1)
    }

    func run() throws {
        let clock = ToolClock()
        let streams = try StreamPath.load(paths)
        let records = try Record.load(requests)
        let (port, postPort, concurrency, rate) = (port, postPort, concurrency, rate)
        try LoadLoop.run(timeout: common.timeout, clock: clock) { bench, done in
            let run = WebhookToStream(bench, port: port, streams: streams, records: records, rate: rate)
            run.start(postPort: postPort, concurrency: concurrency, done: done)
            return run.result
        }
    }
}

/// The state of one `sse` run, on the loop.
private final class WebhookToStream {
    private let bench: LoadLoop
    private let sender: Sender
    private let opener: StreamOpener
    /// When the first `event: job` line after its webhook arrived, by key.
    private var received: [String: UInt64] = [:]
    private var settling = false
    private static let jobMarker = Array("event: job".utf8)

    init(_ bench: LoadLoop, port: Int, streams: [StreamPath], records: [Record], rate: Int) {
        self.bench = bench
        sender = Sender(bench, records: records, rate: rate)
        opener = StreamOpener(bench, port: port, paths: streams)
    }

    func start(postPort: Int, concurrency: Int, done: EventLoopPromise<Report>) {
        let keyOfStream = opener.paths.map(\.key)
        opener.onLine = { [unowned self] connection, line in
            guard line.starts(with: Self.jobMarker) else { return }
            let key = keyOfStream[connection.index]
            if received[key] == nil, sender.sentAt[key] != nil { received[key] = now() }
            if received.count == sender.records.count { settle(done) }
        }
        sender.onDone = { [unowned self] in
            bench.sleep(seconds: 2).assumeIsolated().whenComplete { _ in self.settle(done) }
        }
        opener.open().assumeIsolated()
            .flatMap { self.bench.sleep(seconds: 0.5) }
            .flatMap { self.sender.open(port: postPort, concurrency: concurrency) }
            .whenComplete { outcome in
                switch outcome {
                case .success: self.sender.run()
                case .failure(let error): done.succeed(.failure(error))
                }
            }
    }

    /// Reports 0.2 s after every webhook was delivered, or 2 s after the last was answered.
    private func settle(_ done: EventLoopPromise<Report>) {
        guard !settling else { return }
        settling = true
        bench.sleep(seconds: 0.2).assumeIsolated().whenComplete { _ in done.succeed(self.result()) }
    }

    func result() -> Report {
        var latencies: [UInt64] = []
        for (key, at) in received {
            if let sent = sender.sentAt[key], at >= sent { latencies.append(at - sent) }
        }
        if !sender.isFinished { sender.end = now() }
        var out: Report = [
            "streams": .int(opener.paths.count), "stream_failures": .int(opener.failures),
            "streams_closed_early": .int(opener.closed), "webhooks": .object(sender.result),
            "delivered": .int(latencies.count), "missing": .int(sender.answered - latencies.count),
        ]
        out.merge(latencySummary(latencies)) { $1 }
        return out
    }
}
