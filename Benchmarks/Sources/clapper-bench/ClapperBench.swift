// clapper-bench: the load tool of ops/bench. Each subcommand runs one measurement on one
// event-loop thread that holds every connection, so a measurement's state needs no locks, and
// prints one JSON line. Loopback only: every address it connects to is 127.0.0.1.
//
//   clapper-bench post   --port P --requests FILE --concurrency C [--rate R] [--timeout S]
//   clapper-bench sse    --port P --paths FILE --post-port P2 --requests FILE --concurrency C --rate R
//   clapper-bench fanout --port P --path PATH --n N --events E [--window W]
//                        (--redis-port P --channel CH --message-template FILE | --publish-port P --publish-path PATH)
//   clapper-bench idle   --port P --paths FILE --pids PID,PID [--settle S]
//
// Requests FILE: records `<key> <length>\n<raw HTTP/1.1 request bytes>`, prepared (and signed)
// before the run. Paths FILE: lines `<key> <path>`, one SSE stream each.
import ArgumentParser

@main
struct ClapperBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clapper-bench",
        abstract: "ops/bench's load generator: timed POSTs, webhook -> SSE latency, fan-out, idle streams.",
        subcommands: [PostCommand.self, SSECommand.self, FanoutCommand.self, IdleCommand.self]
    )
}

/// The flags every subcommand takes.
struct CommonOptions: ParsableArguments {
    @Option(help: "Seconds before the run ends with what it has measured (\"timed_out\": true).")
    var timeout: Double = 60

    func validate() throws {
        guard timeout.isFinite, timeout > 0, timeout < 86_400 else {
            throw ValidationError("--timeout must be a number of seconds between 0 and 86400")
        }
    }
}
