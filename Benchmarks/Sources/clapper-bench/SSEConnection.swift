import Foundation
import NIOCore

/// One SSE stream read with a line scanner: only the first 32 bytes of each line are kept.
/// Lives on the run's loop.
final class SSEConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    /// The stream's position in the opener's list of paths.
    let index: Int
    private var prefix: [UInt8] = []
    /// Set on the first bytes received, or when the stream failed before any.
    var settled = false
    var onFirstBytes: (SSEConnection) -> Void = { _ in }
    var onLine: (SSEConnection, [UInt8]) -> Void = { _, _ in }
    var onClose: (SSEConnection) -> Void = { _ in }

    init(index: Int) {
        self.index = index
        prefix.reserveCapacity(32)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if !settled {
            settled = true
            onFirstBytes(self)
        }
        buffer.withUnsafeReadableBytes { raw in
            guard let base = raw.baseAddress else { return }
            var position = 0
            while position < raw.count {
                let newline = memchr(base + position, 10, raw.count - position)
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

extension Array where Element == UInt8 {
    func starts(with marker: [UInt8]) -> Bool {
        count >= marker.count && prefix(marker.count).elementsEqual(marker)
    }
}

/// Opens one stream per path with at most `inFlight` connects pending; `open()` completes once
/// every stream has received its first bytes or failed. Lives on the run's loop.
final class StreamOpener {
    private let bench: LoadLoop
    private let port: Int
    let paths: [StreamPath]
    private var started = 0
    private var settled = 0
    private(set) var failures = 0
    private(set) var closed = 0
    var onLine: (SSEConnection, [UInt8]) -> Void = { _, _ in }
    private let ready: EventLoopPromise<Void>

    init(_ bench: LoadLoop, port: Int, paths: [StreamPath]) {
        self.bench = bench
        self.port = port
        self.paths = paths
        ready = bench.loop.makePromise()
    }

    func open(inFlight: Int = 128) -> EventLoopFuture<Void> {
        if paths.isEmpty { ready.succeed(()) }
        for _ in 0..<min(inFlight, paths.count) { startNext() }
        return ready.futureResult
    }

    private func startNext() {
        guard started < paths.count else { return }
        let index = started
        started += 1
        let connection = SSEConnection(index: index)
        connection.onFirstBytes = { [unowned self] _ in self.settle() }
        connection.onLine = { [unowned self] connection, line in self.onLine(connection, line) }
        connection.onClose = { [unowned self] connection in
            self.closed += 1
            if !connection.settled { self.fail(connection) }
        }
        let request = "GET \(paths[index].path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        bench.connect(port: port, handler: connection).assumeIsolated().whenComplete { [unowned self] result in
            switch result {
            case .success(let channel): channel.writeAndFlush(ByteBuffer(string: request), promise: nil)
            case .failure: self.fail(connection)
            }
        }
    }

    private func fail(_ connection: SSEConnection) {
        guard !connection.settled else { return }
        connection.settled = true
        failures += 1
        settle()
    }

    private func settle() {
        settled += 1
        if settled == paths.count { ready.succeed(()) } else { startNext() }
    }
}
