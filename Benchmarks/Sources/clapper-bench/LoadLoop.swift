import Foundation
import NIOCore
import NIOPosix

/// Nanoseconds on the monotonic clock.
@inline(__always) func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

/// The one event-loop thread of a run: every connection and every measurement's state live on it.
struct LoadLoop {
    let loop: any EventLoop

    /// Runs one measurement and ends the process after printing its report as one JSON line,
    /// stamped with the tool's CPU use since `clock` started.
    ///
    /// `start` runs on the loop: it sets the measurement going, completes `done` with the report
    /// when finished, and returns what reads the partial report at the timeout.
    static func run(
        timeout: Double,
        clock: ToolClock,
        _ start: @escaping @Sendable (LoadLoop, EventLoopPromise<Report>) -> () -> Report
    ) throws -> Never {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let done = loop.makePromise(of: Report.self)
        loop.execute {
            let partial = start(LoadLoop(loop: loop), done)
            loop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(timeout * 1000))) {
                var report = partial()
                report["timed_out"] = true
                done.succeed(report)  // no-op when the run finished first
            }
        }
        var report = try done.futureResult.wait()
        clock.stamp(&report)
        FileHandle.standardOutput.write(report.jsonLine())
        // Thousands of streams may still be open: the process ends without closing them one by one.
        exit(0)
    }

    /// A TCP connection to 127.0.0.1:`port` with `handler` as its whole pipeline. Call on the loop.
    func connect(port: Int, handler: some ChannelHandler) -> EventLoopFuture<any Channel> {
        // The channel lives on this same loop, where the initializer runs and reads the handler.
        let bound = NIOLoopBound(handler, eventLoop: loop)
        return ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(bound.value) }
            }
            .connect(host: "127.0.0.1", port: port)
    }

    /// Completes after `seconds`.
    func sleep(seconds: Double) -> EventLoopFuture<Void> {
        loop.scheduleTask(in: .milliseconds(Int64(seconds * 1000))) {}.futureResult
    }
}

/// The tool's own CPU time (user + system) and wall time since the measurement started.
struct ToolClock: Sendable {
    private let cpuStart = ToolClock.cpuSeconds()
    private let wallStart = now()

    func stamp(_ report: inout Report) {
        let cpu = Self.cpuSeconds() - cpuStart
        let wall = Double(now() - wallStart) / 1e9
        report["tool_cpu_seconds"] = .number(cpu)
        report["tool_cpu_percent"] = .number(cpu / max(wall, 1e-9) * 100)
    }

    private static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}
