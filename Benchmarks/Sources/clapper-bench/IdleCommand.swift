import ArgumentParser
import NIOCore
import Foundation

/// `idle`: the resident memory of the server processes before, and after every stream was opened
/// and settled.
struct IdleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "idle",
        abstract: "Open one SSE stream per path and report the servers' RSS growth per open stream."
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "Port of the streams.") var port: Int
    @Option(help: "Paths file: lines `<key> <path>`, one stream each.") var paths: String
    @Option(help: "Comma-separated ids of the server processes whose RSS is summed.") var pids: String
    @Option(help: "Seconds to wait after the last stream opened.") var settle: Double = 2

    func validate() throws {
        try validatePort(port)
        _ = try processIDs()
        guard settle.isFinite, settle >= 0, settle < 3600 else { throw ValidationError("--settle must be 0 to 3600 seconds") }
    }

    private func processIDs() throws -> [Int] {
        try parseProcessIDs(pids)
    }

    func run() throws {
        let clock = ToolClock()
        let streams = try StreamPath.load(paths)
        let pids = try processIDs()
        let before = residentKilobytes(pids)
        let (port, settle) = (port, settle)
        try LoadLoop.run(timeout: common.timeout, clock: clock) { bench, done in
            let opener = StreamOpener(bench, port: port, paths: streams)
            var after = before
            func result() -> Report {
                let open = streams.count - opener.failures - opener.closed
                return [
                    "streams": .int(streams.count), "open": .int(open), "stream_failures": .int(opener.failures),
                    "streams_closed": .int(opener.closed), "rss_before_kb": .int(before), "rss_after_kb": .int(after),
                    "kb_per_stream": .number(open > 0 ? Double(after - before) / Double(open) : -1),
                ]
            }
            opener.open().assumeIsolated()
                .flatMap { bench.sleep(seconds: settle) }
                .whenComplete { _ in
                    after = residentKilobytes(pids)
                    done.succeed(result())
                }
            return {
                after = residentKilobytes(pids)
                return result()
            }
        }
    }
}
