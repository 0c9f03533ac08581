import ArgumentParser
import Clapper
import Fal
import Foundation
import Hummingbird
import Logging
import Synchronization

/// `clapper` (started by `ClapperMain`): flags (`ClapperOptions`, see `--help`) and the environment
/// -> configuration -> `buildApplication` -> run. Everything else is buildApplication's.
struct ClapperCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clapper",
        abstract: "The Clapper gateway between frontends and fal.ai's queue.",
        discussion: "Each flag sets the environment variable named in its help, and wins over it. Secrets are better passed in the environment than as flags."
    )

    @OptionGroup var options: ClapperOptions

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .trace  // each logger's own level (CLAPPER_LOG_LEVEL) filters
            return handler
        }
        let logger = Logger(label: "clapper")
        let configuration: ClapperConfiguration
        do {
            var read = try ClapperConfiguration(environment: ProcessInfo.processInfo.environment, options: options)
            read.redisOnServerLoops = ClapperMain.tasksRunOnEventLoops.load(ordering: .relaxed)
            configuration = read
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        if !URLSessionTransport.urlLeakWorkaroundActive {
            logger.warning("URLSession's per-request URL leak is not worked around in this build (CurlURLFix is not exported); memory grows by about 180 bytes per fal request")
        }
        let listening = Flag()
        do {
            let app = try await buildApplication(configuration, logger: logger) { port in
                listening.value.store(true, ordering: .relaxed)
                logger.notice("Clapper listening", metadata: ["url": "http://\(configuration.httpHost):\(port)"])
            }
            try await app.runService()
        } catch {
            // A port in use is an everyday mistake: one line naming the address, no stack of errors.
            if !listening.value.load(ordering: .relaxed), let reason = listenFailureDescription(error, host: configuration.httpHost, port: configuration.httpPort) {
                logger.critical("\(reason)")
            } else {
                logger.critical("Clapper stopped: \(error)")
            }
            throw ExitCode(1)
        }
    }
}

/// Whether the server got as far as listening (set from its start callback).
final class Flag: Sendable {
    let value = Atomic<Bool>(false)
}
