// clapper-bench: the load tool of ops/bench. One event-loop thread holds every connection, so its
// state needs no locks. Loopback only: every address it connects to is 127.0.0.1.
//
//   clapper-bench post   --port P --requests FILE --concurrency C [--rate R] [--timeout S]
//   clapper-bench sse    --port P --paths FILE --post-port P2 --requests FILE --concurrency C --rate R
//   clapper-bench fanout --port P --path PATH --n N --events E --window W
//                        (--redis-port P --channel CH --message-template FILE | --publish-port P --publish-path PATH)
//   clapper-bench idle   --port P --paths FILE --pids PID,PID [--settle S]
//
// Requests FILE: records `<key> <length>\n<raw HTTP/1.1 request bytes>`, prepared (and signed)
// before the run. Paths FILE: lines `<key> <path>`, one SSE stream each. Prints one JSON line.
import Foundation
import NIOCore
import NIOPosix

// MARK: - Options, clock, statistics

var options: [String: String] = [:]
let command = CommandLine.arguments.dropFirst().first ?? ""
do {
    var rest = CommandLine.arguments.dropFirst(2)
    while let flag = rest.popFirst() {
        guard flag.hasPrefix("--"), let value = rest.popFirst() else { fatalError("bad flag \(flag)") }
        options[String(flag.dropFirst(2))] = value
    }
}
func option(_ name: String) -> String {
    guard let value = options[name] else { fatalError("--\(name) is required") }
    return value
}
func intOption(_ name: String, _ fallback: Int? = nil) -> Int {
    if let value = options[name] { return Int(value)! }
    guard let fallback else { fatalError("--\(name) is required") }
    return fallback
}

@inline(__always) func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

func percentile(_ sorted: [UInt64], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return -1 }
    let index = min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)
    return Double(sorted[max(0, index)]) / 1e6  // ms
}

func summary(_ samples: [UInt64], prefix: String) -> [String: Any] {
    let sorted = samples.sorted()
    return ["\(prefix)p50_ms": percentile(sorted, 0.50), "\(prefix)p99_ms": percentile(sorted, 0.99), "\(prefix)max_ms": sorted.isEmpty ? -1 : Double(sorted.last!) / 1e6]
}

func emit(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

struct Record {
    let key: String
    let bytes: ByteBuffer
}

func loadRecords(_ path: String) -> [Record] {
    let data = FileManager.default.contents(atPath: path) ?? Data()
    var records: [Record] = []
    data.withUnsafeBytes { raw in
        var index = 0
        while index < raw.count {
            var end = index
            while raw[end] != 10 { end += 1 }
            let header = String(decoding: UnsafeRawBufferPointer(rebasing: raw[index..<end]), as: UTF8.self).split(separator: " ")
            let length = Int(header[1])!
            let body = UnsafeRawBufferPointer(rebasing: raw[(end + 1)..<(end + 1 + length)])
            records.append(Record(key: String(header[0]), bytes: ByteBuffer(bytes: body)))
            index = end + 1 + length
        }
    }
    return records
}

func loadPaths(_ path: String) -> [(key: String, path: String)] {
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    return text.split(separator: "\n").map { line in
        let parts = line.split(separator: " ", maxSplits: 1)
        return (String(parts[0]), String(parts[1]))
    }
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let loop = group.next()
let address = "127.0.0.1"

func connect(port: Int, handler: @escaping @Sendable () -> any ChannelHandler) -> EventLoopFuture<any Channel> {
    ClientBootstrap(group: loop)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .connectTimeout(.seconds(10))
        .channelInitializer { channel in channel.pipeline.addHandler(handler()) }
        .connect(host: address, port: port)
}

// MARK: - HTTP/1.1 request-response connections (keep-alive, Content-Length responses)

final class HTTPConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    var context: ChannelHandlerContext?
    var buffer = ByteBuffer()
    var busy = false
    var sentAt: UInt64 = 0
    var key = ""
    var onResponse: (HTTPConnection, Int) -> Void = { _, _ in }
    var onClose: (HTTPConnection) -> Void = { _ in }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func send(_ record: Record) {
        busy = true
        key = record.key
        sentAt = now()
        context?.writeAndFlush(NIOAny(record.bytes), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while let status = takeResponse() {
            busy = false
            onResponse(self, status)
        }
        if buffer.readerIndex > 65536 { buffer.discardReadBytes() }
    }

    func channelInactive(context: ChannelHandlerContext) { onClose(self) }

    /// The status of the next whole response in the buffer (consumed), or nil. Bodies are
    /// delimited by Content-Length or chunked encoding (ended by the `0\r\n\r\n` chunk).
    func takeResponse() -> Int? {
        let parsed = buffer.withUnsafeReadableBytes { raw -> (status: Int, total: Int)? in
            guard raw.count >= 16, let base = raw.baseAddress else { return nil }
            func find(_ pattern: [UInt8], from start: Int) -> Int? {
                var i = start
                while i + pattern.count <= raw.count {
                    if raw[i] == pattern[0], (1..<pattern.count).allSatisfy({ raw[i + $0] == pattern[$0] }) { return i }
                    i += 1
                }
                return nil
            }
            guard let headerEnd = find([13, 10, 13, 10], from: 12) else { return nil }
            let status = (Int(raw[9]) - 48) * 100 + (Int(raw[10]) - 48) * 10 + (Int(raw[11]) - 48)
            let header = String(decoding: UnsafeRawBufferPointer(start: base, count: headerEnd), as: UTF8.self).lowercased()
            if header.contains("transfer-encoding: chunked") {
                guard let last = find(Array("\r\n0\r\n\r\n".utf8), from: headerEnd + 2) else { return nil }
                return (status, last + 7)
            }
            var length = 0
            if let range = header.range(of: "content-length:") {
                // On the UTF-8 view: "\r\n" is one Character in a String.
                length = Int(String(decoding: header[range.upperBound...].utf8.prefix { $0 != 13 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)) ?? 0
            }
            let total = headerEnd + 4 + length
            guard raw.count >= total else { return nil }
            return (status, total)
        }
        guard let parsed else { return nil }
        buffer.moveReaderIndex(forwardBy: parsed.total)
        return parsed.status
    }
}

/// Sends `records` over `concurrency` keep-alive connections: closed loop (next request on a
/// response), or paced at `rate` per second. Calls `done` once every request was answered or at the deadline.
final class Sender: @unchecked Sendable {
    let records: [Record]
    let rate: Int
    var connections: [HTTPConnection] = []
    var next = 0
    var answered = 0
    var ok = 0
    var statuses: [Int: Int] = [:]
    var latencies: [UInt64] = []
    var sentAt: [String: UInt64] = [:]
    var start: UInt64 = 0
    var end: UInt64 = 0
    var finished = false
    var onDone: () -> Void = {}
    var task: RepeatedTask?

    init(records: [Record], rate: Int) {
        self.records = records
        self.rate = rate
        latencies.reserveCapacity(records.count)
        sentAt.reserveCapacity(records.count)
    }

    func open(port: Int, concurrency: Int) -> EventLoopFuture<Void> {
        let futures = (0..<concurrency).map { _ in
            let connection = HTTPConnection()
            connection.onResponse = { [unowned self] connection, status in self.answer(connection, status) }
            connections.append(connection)
            return connect(port: port) { connection }.map { _ in () }
        }
        return EventLoopFuture.andAllSucceed(futures, on: loop)
    }

    func run() {
        start = now()
        if rate > 0 {
            task = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .microseconds(500)) { [unowned self] _ in self.pace() }
        } else {
            for connection in connections { sendNext(on: connection) }
        }
    }

    func pace() {
        let due = min(records.count, Int(Double(now() - start) / 1e9 * Double(rate)) + 1)
        while next < due, let idle = connections.first(where: { !$0.busy }) {
            sendNext(on: idle)
        }
        if next >= records.count { task?.cancel() }
    }

    func sendNext(on connection: HTTPConnection) {
        guard next < records.count else { return }
        let record = records[next]
        next += 1
        connection.send(record)
        sentAt[record.key] = connection.sentAt
    }

    func answer(_ connection: HTTPConnection, _ status: Int) {
        let at = now()
        latencies.append(at - connection.sentAt)
        answered += 1
        if (200..<300).contains(status) { ok += 1 }
        statuses[status, default: 0] += 1
        if answered == records.count {
            finish()
        } else if rate == 0 {
            sendNext(on: connection)
        }
    }

    func finish() {
        guard !finished else { return }
        finished = true
        end = now()
        task?.cancel()
        onDone()
    }

    var result: [String: Any] {
        let seconds = Double(end - start) / 1e9
        var out: [String: Any] = ["sent": next, "answered": answered, "ok": ok, "seconds": seconds, "rps": Double(answered) / max(seconds, 1e-9),
                                  "statuses": Dictionary(uniqueKeysWithValues: statuses.map { ("\($0.key)", $0.value) })]
        out.merge(summary(latencies, prefix: "")) { $1 }
        return out
    }
}

// MARK: - SSE streams

/// One SSE stream read with a line scanner: only the first 32 bytes of each line are kept.
final class SSEConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let index: Int
    var prefix: [UInt8] = []
    var connected = false
    var onFirstBytes: (SSEConnection) -> Void = { _ in }
    var onLine: (SSEConnection, [UInt8]) -> Void = { _, _ in }
    var onClose: (SSEConnection) -> Void = { _ in }
    var channel: (any Channel)?

    init(index: Int) {
        self.index = index
        prefix.reserveCapacity(32)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if !connected {
            connected = true
            onFirstBytes(self)
        }
        buffer.withUnsafeReadableBytes { raw in
            guard let base = raw.baseAddress else { return }
            var position = 0
            while position < raw.count {
                let rest = raw.count - position
                let newline = memchr(base + position, 10, rest)
                let segmentEnd = newline.map { base.distance(to: UnsafeRawPointer($0)) } ?? raw.count
                let take = min(32 - prefix.count, segmentEnd - position)
                if take > 0 { prefix.append(contentsOf: UnsafeRawBufferPointer(start: base + position, count: take)) }
                if newline != nil {
                    onLine(self, prefix)
                    prefix.removeAll(keepingCapacity: true)
                    position = segmentEnd + 1
                } else {
                    position = raw.count
                }
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) { onClose(self) }
}

func startsWith(_ line: [UInt8], _ marker: [UInt8]) -> Bool {
    line.count >= marker.count && line.prefix(marker.count).elementsEqual(marker)
}

/// Opens one stream per path with at most `inFlight` connects pending; `ready` once every one
/// has received its first bytes (or failed).
final class StreamOpener: @unchecked Sendable {
    let port: Int
    let paths: [(key: String, path: String)]
    var connections: [SSEConnection] = []
    var started = 0
    var settled = 0
    var failures = 0
    var closed = 0
    var onLine: (SSEConnection, [UInt8]) -> Void = { _, _ in }
    let ready: EventLoopPromise<Void>

    init(port: Int, paths: [(key: String, path: String)]) {
        self.port = port
        self.paths = paths
        ready = loop.makePromise()
    }

    func open(inFlight: Int = 128) -> EventLoopFuture<Void> {
        if paths.isEmpty { ready.succeed(()) }
        for _ in 0..<min(inFlight, paths.count) { startNext() }
        return ready.futureResult
    }

    func startNext() {
        guard started < paths.count else { return }
        let index = started
        started += 1
        let connection = SSEConnection(index: index)
        connection.onFirstBytes = { [unowned self] _ in self.settle() }
        connection.onLine = { [unowned self] connection, line in self.onLine(connection, line) }
        connection.onClose = { [unowned self] connection in
            self.closed += 1
            if !connection.connected { connection.connected = true; self.failures += 1; self.settle() }
        }
        connections.append(connection)
        let request = "GET \(paths[index].path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        connect(port: port) { connection }.whenComplete { [unowned self] result in
            switch result {
            case .success(let channel):
                connection.channel = channel
                channel.writeAndFlush(ByteBuffer(string: request), promise: nil)
            case .failure:
                connection.connected = true
                self.failures += 1
                self.settle()
            }
        }
    }

    func settle() {
        settled += 1
        if settled == paths.count { ready.succeed(()) } else { startNext() }
    }

    func closeAll() -> EventLoopFuture<Void> {
        let futures = connections.compactMap { $0.channel?.close().recover { _ in } }
        return EventLoopFuture.andAllComplete(futures, on: loop)
    }
}

func sleep(seconds: Double) -> EventLoopFuture<Void> {
    loop.scheduleTask(in: .milliseconds(Int64(seconds * 1000))) {}.futureResult
}

func rssKilobytes(_ pids: [Int]) -> Int {
    pids.reduce(0) { total, pid in
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return total + (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0)
    }
}

// MARK: - Commands

let timeout = Double(options["timeout"] ?? "60")!
let cpuStart = cpuSeconds()
let wallStart = now()

func withCPU(_ result: [String: Any]) -> [String: Any] {
    var result = result
    let wall = Double(now() - wallStart) / 1e9
    result["tool_cpu_seconds"] = cpuSeconds() - cpuStart
    result["tool_cpu_percent"] = (cpuSeconds() - cpuStart) / max(wall, 1e-9) * 100
    return result
}

/// Runs `body` on the loop; ends the process with its result, or at the timeout with what there is.
func main(_ body: @escaping (EventLoopPromise<[String: Any]>) -> Void, partial: @escaping () -> [String: Any]) -> Never {
    let promise = loop.makePromise(of: [String: Any].self)
    loop.execute { body(promise) }
    loop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) {
        var result = partial()
        result["timed_out"] = true
        promise.succeed(result)
    }
    let result = try! promise.futureResult.wait()
    emit(withCPU(result))
    exit(0)
}

switch command {
case "post":
    let sender = Sender(records: loadRecords(option("requests")), rate: intOption("rate", 0))
    main({ promise in
        sender.onDone = { promise.succeed(sender.result) }
        sender.open(port: intOption("port"), concurrency: intOption("concurrency")).whenComplete { result in
            if case .failure(let error) = result { promise.succeed(["error": "\(error)"]); return }
            sender.run()
        }
    }, partial: { sender.end = now(); return sender.result })

case "sse":
    // Webhook -> SSE: stream k is the job of request key k; the first `event: job` line on it
    // after its webhook was sent is the delivery.
    let paths = loadPaths(option("paths"))
    let sender = Sender(records: loadRecords(option("requests")), rate: intOption("rate"))
    let opener = StreamOpener(port: intOption("port"), paths: paths)
    let keyOfStream = paths.map(\.key)
    var received: [String: UInt64] = [:]
    let jobMarker = Array("event: job".utf8)
    var settleAfter: () -> Void = {}
    func result() -> [String: Any] {
        var latencies: [UInt64] = []
        for (key, at) in received { if let sent = sender.sentAt[key], at >= sent { latencies.append(at - sent) } }
        var out: [String: Any] = ["streams": paths.count, "stream_failures": opener.failures, "streams_closed_early": opener.closed,
                                  "webhooks": sender.result, "delivered": latencies.count, "missing": sender.answered - latencies.count]
        out.merge(summary(latencies, prefix: "")) { $1 }
        return out
    }
    main({ promise in
        opener.onLine = { connection, line in
            if startsWith(line, jobMarker) {
                let key = keyOfStream[connection.index]
                if received[key] == nil, sender.sentAt[key] != nil { received[key] = now() }
                if received.count == sender.records.count { settleAfter() }
            }
        }
        settleAfter = { settleAfter = {}; sleep(seconds: 0.2).whenComplete { _ in promise.succeed(result()) } }
        sender.onDone = { sleep(seconds: 2).whenComplete { _ in settleAfter() } }
        opener.open().flatMap { sleep(seconds: 0.5) }
            .flatMap { sender.open(port: intOption("post-port"), concurrency: intOption("concurrency")) }
            .whenComplete { outcome in
                if case .failure(let error) = outcome { promise.succeed(["error": "\(error)"]); return }
                sender.run()
            }
    }, partial: { sender.end = now(); return result() })

case "fanout":
    // One stream path opened n times; `events` numbered events published with at most `window`
    // not yet delivered to every stream. Each data line starts `data: {"bseq":<n>`.
    let n = intOption("n")
    let events = intOption("events")
    let window = intOption("window", 4)
    let opener = StreamOpener(port: intOption("port"), paths: Array(repeating: ("k", option("path")), count: n))
    var sentAt = [UInt64](repeating: 0, count: events)
    var delivered = [Int](repeating: 0, count: events)
    var complete = 0
    var published = 0
    var latencies: [UInt64] = []
    latencies.reserveCapacity(n * events)
    var firstSend: UInt64 = 0
    var lastReceive: UInt64 = 0
    var publisher: (any Channel)?
    var finish: () -> Void = {}
    let marker = Array(#"data: {"bseq":"#.utf8)
    let template = options["message-template"].flatMap { FileManager.default.contents(atPath: $0) }.map { String(decoding: $0, as: UTF8.self) } ?? ""
    let channelName = options["channel"] ?? ""
    let baseMilliseconds = Int(Date().timeIntervalSince1970 * 1000) + 60_000
    func publishBytes(_ seq: Int) -> ByteBuffer {
        if options["redis-port"] != nil {
            let message = template.replacingOccurrences(of: "@ID@", with: "\(baseMilliseconds)-\(seq)").replacingOccurrences(of: "@SEQ@", with: "\(seq)")
            let parts = ["PUBLISH", channelName, message]
            var out = "*3\r\n"
            for part in parts { out += "$\(part.utf8.count)\r\n\(part)\r\n" }
            return ByteBuffer(string: out)
        } else {
            let body = #"{"bseq":\#(seq)}"#
            return ByteBuffer(string: "POST \(option("publish-path")) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        }
    }
    func publishMore() {
        while published < events, published - complete < window {
            sentAt[published] = now()
            if published == 0 { firstSend = sentAt[0] }
            publisher?.writeAndFlush(publishBytes(published), promise: nil)
            published += 1
        }
    }
    func result() -> [String: Any] {
        let total = latencies.count
        let seconds = Double(lastReceive &- firstSend) / 1e9
        var out: [String: Any] = ["subscribers": n, "stream_failures": opener.failures, "streams_closed": opener.closed, "events_published": published,
                                  "events_complete": complete, "deliveries": total, "expected": n * events,
                                  "seconds": seconds, "events_per_s": seconds > 0 ? Double(total) / seconds : 0]
        out.merge(summary(latencies, prefix: "")) { $1 }
        return out
    }
    final class Discard: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
    }
    main({ promise in
        opener.onLine = { _, line in
            guard startsWith(line, marker) else { return }
            var seq = 0
            for byte in line.dropFirst(marker.count) {
                guard byte >= 48, byte <= 57 else { break }
                seq = seq * 10 + Int(byte - 48)
            }
            guard seq < events else { return }
            let at = now()
            latencies.append(at - sentAt[seq])
            lastReceive = at
            delivered[seq] += 1
            if delivered[seq] == n - opener.failures {
                complete += 1
                if complete == events { finish() } else { publishMore() }
            }
        }
        finish = { finish = {}; promise.succeed(result()) }
        let publishPort = options["redis-port"].map { Int($0)! } ?? intOption("publish-port")
        opener.open().flatMap { sleep(seconds: 1) }
            .flatMap { connect(port: publishPort) { Discard() } }
            .whenComplete { outcome in
                switch outcome {
                case .failure(let error): promise.succeed(["error": "\(error)"])
                case .success(let channel):
                    publisher = channel
                    publishMore()
                }
            }
    }, partial: { result() })

case "idle":
    // RSS of the server processes before, and after every stream opened and settled.
    let paths = loadPaths(option("paths"))
    let pids = option("pids").split(separator: ",").map { Int($0)! }
    let opener = StreamOpener(port: intOption("port"), paths: paths)
    let before = rssKilobytes(pids)
    var after = before
    func result() -> [String: Any] {
        let open = paths.count - opener.failures - opener.closed
        return ["streams": paths.count, "open": open, "stream_failures": opener.failures, "streams_closed": opener.closed, "rss_before_kb": before, "rss_after_kb": after,
                "kb_per_stream": open > 0 ? Double(after - before) / Double(open) : -1]
    }
    main({ promise in
        opener.open().flatMap { sleep(seconds: Double(options["settle"] ?? "2")!) }.whenComplete { _ in
            after = rssKilobytes(pids)
            promise.succeed(result())
        }
    }, partial: { after = rssKilobytes(pids); return result() })

default:
    FileHandle.standardError.write(Data("usage: clapper-bench post|sse|fanout|idle --flags (see the header of Sources/clapper-bench/main.swift)\n".utf8))
    exit(2)
}
