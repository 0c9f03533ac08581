import Foundation
import NIOCore

/// One keep-alive HTTP/1.1 connection that sends prepared requests and reports the status of
/// each whole response (bodies delimited by Content-Length, or chunked up to the `0\r\n\r\n` chunk).
/// Lives on the run's loop.
final class HTTPConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    private var buffer = ByteBuffer()
    private(set) var busy = false
    /// When the request now in flight was sent.
    private(set) var sentAt: UInt64 = 0
    var onResponse: (HTTPConnection, Int) -> Void = { _, _ in }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func send(_ record: Record) {
        busy = true
        sentAt = now()
        context?.writeAndFlush(wrapOutboundOut(record.bytes), promise: nil)
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

    /// The status of the next whole response in the buffer (consumed), or nil.
    private func takeResponse() -> Int? {
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
                let digits = String(decoding: header[range.upperBound...].utf8.prefix { $0 != 13 }, as: UTF8.self)
                // At most 1 GiB: a larger or junk length cannot overflow the sum below.
                length = min(max(Int(digits.trimmingCharacters(in: .whitespaces)) ?? 0, 0), 1 << 30)
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

/// Sends `records` over keep-alive connections: closed loop (the next request on each response),
/// or paced at `rate` per second. Calls `onDone` once every request was answered.
final class Sender {
    let records: [Record]
    private let rate: Int
    private let bench: LoadLoop
    private var connections: [HTTPConnection] = []
    private(set) var next = 0
    private(set) var answered = 0
    private var ok = 0
    private var statuses: [Int: Int] = [:]
    private var latencies: [UInt64] = []
    /// When the request of each key was sent.
    private(set) var sentAt: [String: UInt64] = [:]
    private var start: UInt64 = 0
    var end: UInt64 = 0
    private var finished = false
    var isFinished: Bool { finished }
    private var pacer: Scheduled<Void>?
    var onDone: () -> Void = {}

    init(_ bench: LoadLoop, records: [Record], rate: Int) {
        self.bench = bench
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
            return bench.connect(port: port, handler: connection).map { _ in () }
        }
        return EventLoopFuture.andAllSucceed(futures, on: bench.loop)
    }

    func run() {
        start = now()
        if rate > 0 {
            pace()
        } else {
            for connection in connections { sendNext(on: connection) }
        }
    }

    /// Sends what is due by now on idle connections, then looks again in 500 µs.
    private func pace() {
        let due = min(records.count, Int(Double(now() - start) / 1e9 * Double(rate)) + 1)
        while next < due, let idle = connections.first(where: { !$0.busy }) {
            sendNext(on: idle)
        }
        guard next < records.count, !finished else { return }
        pacer = bench.loop.assumeIsolated().scheduleTask(in: .microseconds(500)) { [unowned self] in self.pace() }
    }

    private func sendNext(on connection: HTTPConnection) {
        guard next < records.count else { return }
        let record = records[next]
        next += 1
        connection.send(record)
        sentAt[record.key] = connection.sentAt
    }

    private func answer(_ connection: HTTPConnection, _ status: Int) {
        latencies.append(now() - connection.sentAt)
        answered += 1
        if (200..<300).contains(status) { ok += 1 }
        statuses[status, default: 0] += 1
        if answered == records.count {
            finish()
        } else if rate == 0 {
            sendNext(on: connection)
        }
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        end = now()
        pacer?.cancel()
        onDone()
    }

    var result: Report {
        let seconds = Double(end &- start) / 1e9
        var out: Report = [
            "sent": .int(next), "answered": .int(answered), "ok": .int(ok), "seconds": .number(seconds),
            "rps": .number(Double(answered) / max(seconds, 1e-9)),
            "statuses": .object(Dictionary(uniqueKeysWithValues: statuses.map { ("\($0.key)", .int($0.value)) })),
        ]
        out.merge(latencySummary(latencies)) { $1 }
        return out
    }
}
