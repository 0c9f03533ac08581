import Clapper
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

    func kill() async {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        for await _ in exited { break }
    }
}

struct ReconcileTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
