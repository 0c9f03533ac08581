import ArgumentParser
import Foundation
import NIOCore

/// `fanout`: one stream path opened `n` times; `events` numbered events published with at most
/// `window` not yet delivered to every stream. Each data line starts `data: {"bseq":<n>`.
struct FanoutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "Open one stream n times, publish numbered events (Redis PUBLISH or HTTP POST), time every delivery."
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "Port of the streams.") var port: Int
    @Option(help: "Path of the stream every subscriber opens.") var path: String
    @Option(help: "Subscribers.") var n: Int
    @Option(help: "Events to publish.") var events: Int
    @Option(help: "Events published and not yet delivered to every subscriber, at most.") var window: Int = 4
    @Option(help: "Publish with Redis PUBLISH on this port...") var redisPort: Int?
    @Option(help: "...to this channel...") var channel: String?
    @Option(help: "...with this command (SPUBLISH for a Redis Cluster shard channel)...") var publishCommand: String = "PUBLISH"
    @Option(help: "...a message read from this file, with @ID@ and @SEQ@ replaced.") var messageTemplate: String?
    @Option(help: "Or publish with HTTP POST on this port...") var publishPort: Int?
    @Option(help: "...to this path.") var publishPath: String?
    @Option(help: "Comma-separated ids of the server processes: their CPU time and write syscalls per delivered event, from the first publish to the last delivery (stream openings left out).") var pids: String?

    func validate() throws {
        try validatePort(port)
        try validateCount(n, "--n", atLeast: 1)
        try validateCount(events, "--events", atLeast: 1)
        try validateCount(window, "--window", atLeast: 1)
        if let pids { _ = try parseProcessIDs(pids) }
        switch (redisPort, publishPort) {
        case (let redisPort?, nil):
            try validatePort(redisPort, "--redis-port")
            guard channel != nil, messageTemplate != nil else {
                throw ValidationError("--redis-port needs --channel and --message-template")
            }
        case (nil, let publishPort?):
            try validatePort(publishPort, "--publish-port")
            guard publishPath != nil else { throw ValidationError("--publish-port needs --publish-path") }
        default:
            throw ValidationError("give either --redis-port (with --channel, --message-template) or --publish-port (with --publish-path)")
        }
    }

    func run() throws {
        let clock = ToolClock()
        let publisher: Publisher
        if let redisPort, let channel, let messageTemplate {
            guard let template = FileManager.default.contents(atPath: messageTemplate) else {
                throw ValidationError("cannot read the message template \(messageTemplate)")
            }
            let baseMilliseconds = Int(Date().timeIntervalSince1970 * 1000) + 60_000
            publisher = .redis(port: redisPort, command: publishCommand, channel: channel, template: String(decoding: template, as: UTF8.self), baseMilliseconds: baseMilliseconds)
        } else if let publishPort, let publishPath {
            publisher = .http(port: publishPort, path: publishPath)
        } else {
            throw ValidationError("no publisher")  // validate() rules this out
        }
        let (port, path, n, events, window) = (port, path, n, events, window)
        let servers = try pids.map(parseProcessIDs) ?? []
        try LoadLoop.run(timeout: common.timeout, clock: clock) { bench, done in
            let run = Fanout(bench, port: port, path: path, n: n, events: events, window: window, publisher: publisher, servers: servers)
            run.start(done: done)
            return run.result
        }
    }
}

/// How an event is published: a Redis PUBLISH (or SPUBLISH) of the gateway's message, or nchan's HTTP POST.
enum Publisher: Sendable {
    case redis(port: Int, command: String, channel: String, template: String, baseMilliseconds: Int)
    case http(port: Int, path: String)

    var port: Int {
        switch self {
        case .redis(let port, _, _, _, _), .http(let port, _): port
        }
    }

    func bytes(_ seq: Int) -> ByteBuffer {
        switch self {
        case .redis(_, let command, let channel, let template, let baseMilliseconds):
            let message = template.replacingOccurrences(of: "@ID@", with: "\(baseMilliseconds)-\(seq)")
                .replacingOccurrences(of: "@SEQ@", with: "\(seq)")
            var out = "*3\r\n"
            for part in [command, channel, message] { out += "$\(part.utf8.count)\r\n\(part)\r\n" }
            return ByteBuffer(string: out)
        case .http(_, let path):
            let body = #"{"bseq":\#(seq)}"#
            return ByteBuffer(
                string: "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            )
        }
    }
}

/// Reads and drops what the publisher's peer answers.
private final class Discard: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// The state of one `fanout` run, on the loop.
private final class Fanout {
    private let bench: LoadLoop
    private let n: Int
    private let events: Int
    private let window: Int
    private let publisher: Publisher
    private let opener: StreamOpener
    private var sentAt: [UInt64]
    private var delivered: [Int]
    private var complete = 0
    private var published = 0
    private var latencies: [UInt64] = []
    private var firstSend: UInt64 = 0
    private var lastReceive: UInt64 = 0
    private var channel: (any Channel)?
    private var done: EventLoopPromise<Report>?
    /// Server processes measured from the first publish to the last delivery.
    private let servers: [Int]
    private var usageAtFirstSend: (cpuSeconds: Double, writes: Int) = (0, 0)
    private static let marker = Array(#"data: {"bseq":"#.utf8)

    init(_ bench: LoadLoop, port: Int, path: String, n: Int, events: Int, window: Int, publisher: Publisher, servers: [Int]) {
        self.bench = bench
        self.servers = servers
        self.n = n
        self.events = events
        self.window = window
        self.publisher = publisher
        opener = StreamOpener(bench, port: port, paths: Array(repeating: StreamPath(key: "k", path: path), count: n))
        sentAt = Array(repeating: 0, count: events)
        delivered = Array(repeating: 0, count: events)
        latencies.reserveCapacity(n * events)
    }

    func start(done: EventLoopPromise<Report>) {
        self.done = done
        opener.onLine = { [unowned self] _, line in self.line(line) }
        opener.open().assumeIsolated()
            .flatMap { self.bench.sleep(seconds: 1) }
            .flatMap { self.bench.connect(port: self.publisher.port, handler: Discard()) }
            .whenComplete { outcome in
                switch outcome {
                case .success(let channel):
                    self.channel = channel
                    self.publishMore()
                case .failure(let error): done.succeed(.failure(error))
                }
            }
    }

    private func line(_ line: [UInt8]) {
        guard line.starts(with: Self.marker) else { return }
        var seq = 0
        for byte in line.dropFirst(Self.marker.count) {
            guard byte >= 48, byte <= 57 else { break }
            seq = seq * 10 + Int(byte - 48)
        }
        guard seq < events else { return }
        let at = now()
        latencies.append(at &- sentAt[seq])
        lastReceive = at
        delivered[seq] += 1
        if delivered[seq] == n - opener.failures {
            complete += 1
            if complete == events {
                done?.succeed(result())
                done = nil
            } else {
                publishMore()
            }
        }
    }

    private func publishMore() {
        while published < events, published - complete < window {
            sentAt[published] = now()
            if published == 0 {
                if !servers.isEmpty { usageAtFirstSend = processUsage(servers) }
                firstSend = now()
                sentAt[0] = firstSend
            }
            channel?.writeAndFlush(publisher.bytes(published), promise: nil)
            published += 1
        }
    }

    func result() -> Report {
        let total = latencies.count
        let seconds = Double(lastReceive &- firstSend) / 1e9
        var out: Report = [
            "subscribers": .int(n), "stream_failures": .int(opener.failures), "streams_closed": .int(opener.closed),
            "events_published": .int(published), "events_complete": .int(complete), "deliveries": .int(total),
            "expected": .int(n * events), "seconds": .number(seconds),
            "events_per_s": .number(seconds > 0 ? Double(total) / seconds : 0),
        ]
        if !servers.isEmpty {
            let usage = processUsage(servers)
            let deliveries = Double(max(total, 1))
            out["server_cpu_us"] = .number((usage.cpuSeconds - usageAtFirstSend.cpuSeconds) / deliveries * 1e6)
            out["server_writes"] = .number(Double(usage.writes - usageAtFirstSend.writes) / deliveries)
        }
        out.merge(latencySummary(latencies)) { $1 }
        return out
    }
}
