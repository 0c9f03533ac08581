import Clapper
import FalSim
import Foundation
import TestSupport

/// The `clapper` executable as a child process: not a `withGateway` gateway, a real process a
/// test can kill (SIGKILL) and start again on the same port.
final class ClapperProcess: Sendable {
    let process: SpawnedProcess
    private let exited: AsyncStream<Int32>

    /// `.build/debug/clapper`, next to the test bundle (built by `swift build --build-tests`).
    static func binary() throws -> URL {
        var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("clapper")]
        candidates += [Bundle.main.bundleURL.appendingPathComponent("clapper"), Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("clapper")]
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build/debug/clapper"))
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw ReconcileTestFailure("no clapper executable at \(candidates.map(\.path)); run swift build --build-tests")
        }
        return found
    }

    /// What a test's `clapper` needs to run against the test's Redis and fal-sim, with `extra`
    /// on top (its port, its reconcile interval, ...). Logs at warning.
    static func environment(redis server: RedisServer, sim: FalSim, _ extra: [String: String]) async -> [String: String] {
        [
            "CLAPPER_REDIS_URL": server.urlString,
            "FAL_QUEUE_URL": await sim.baseURL.absoluteString,
            "FAL_KEY": "sim-key:sim-secret",
            "FAL_JWKS_URL": await sim.jwksURL.absoluteString,
            "FAL_WEBHOOK_USER_ID": sim.userID,
            "CLAPPER_WEBHOOK_SECRET": "test-webhook-secret-0123456789",
            "CLAPPER_AUTH_JWT_SECRET": "test-jwt-secret-0123456789abcdef",
            "CLAPPER_LOG_LEVEL": "warning",
        ].merging(extra) { $1 }
    }

    init(binary: URL, environment: [String: String]) throws {
        let process = SpawnedProcess()
        process.executableURL = binary
        process.arguments = []
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        process.terminationHandler = { continuation.yield($0.terminationStatus); continuation.finish() }
        self.process = process
        self.exited = stream
        try process.run()
    }

    /// Polls `/readyz` (a child process offers nothing to await) for up to 20 s.
    func waitUntilReady(port: Int) async throws {
        let gateway = Gateway(port: port, configuration: ClapperConfiguration())
        for _ in 0..<400 {
            guard process.isRunning else { throw ReconcileTestFailure("clapper exited with \(process.terminationStatus)") }
            if let reply = try? await gateway.send(.GET, "/readyz"), reply.status == 200 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ReconcileTestFailure("clapper did not become ready")
    }

    /// A test that throws or runs out of time before its `kill()` does not leave the gateway
    /// running (writing to the test run's stderr, which then never ends).
    deinit {
        process.signal(SIGKILL)
    }

    func kill() async {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        for await _ in exited { break }
    }
}

struct ReconcileTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
