import Clapper
import Foundation
import Hummingbird
import Logging
import Synchronization

// Configuration from the environment and command line; everything else is buildApplication's.
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .trace  // each logger's own level (CLAPPER_LOG_LEVEL) filters
    return handler
}
let logger = Logger(label: "clapper")
let configuration: ClapperConfiguration
do {
    configuration = try ClapperConfiguration(environment: ProcessInfo.processInfo.environment, arguments: Array(CommandLine.arguments.dropFirst()))
} catch {
    logger.critical("\(error)")
    exit(2)
}
let listening = Atomic<Bool>(false)
do {
    let app = try await buildApplication(configuration, logger: logger) { port in
        listening.store(true, ordering: .relaxed)
        logger.notice("Clapper listening", metadata: ["url": "http://\(configuration.httpHost):\(port)"])
    }
    try await app.runService()
} catch {
    // A port in use is an everyday mistake: one line naming the address, no stack of errors.
    if !listening.load(ordering: .relaxed), let reason = listenFailureDescription(error, host: configuration.httpHost, port: configuration.httpPort) {
        logger.critical("\(reason)")
    } else {
        logger.critical("Clapper stopped: \(error)")
    }
    exit(1)
}
