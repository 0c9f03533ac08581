import Foundation
import NIOPosix
import Testing
import TestSupport

/// A Python helper under `Tests/ClapperTests/python/`, run by the venv ops/test makes
/// (`.build/python`: opentelemetry-proto, moto), while `body` runs. Its first line on stdout
/// says where it listens; it ends when its stdin closes.
struct PythonServiceMissing: Error {}

func withPythonService<T: Sendable>(_ script: String, arguments: [String] = [], _ body: (_ firstLine: String) async throws -> T) async throws -> T {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let python = root.appendingPathComponent(".build/python/bin/python3").path
    guard FileManager.default.isExecutableFile(atPath: python) else {
        Issue.record("This test needs .build/python (opentelemetry-proto, moto): run ops/test, or source ops/lib.sh; ensure_python_tools")
        throw PythonServiceMissing()
    }
    let process = SpawnedProcess()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = [root.appendingPathComponent("Tests/ClapperTests/python/\(script)").path] + arguments
    let input = Pipe(), output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    // The reads and the wait block: they run on NIO's thread pool, not Swift's two cooperative
    // threads (a helper starting for seconds, moto's server, starved every other test's timers:
    // a 200 ms deadline was seen to end after 5 s).
    let stop: @Sendable () async -> Void = {
        try? input.fileHandleForWriting.close()
        try? await NIOThreadPool.singleton.runIfActive { process.waitUntilExit() }
    }
    do {
        let line = try await NIOThreadPool.singleton.runIfActive {
            var line: [UInt8] = []
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = output.fileHandleForReading.availableData
                guard !chunk.isEmpty else { break }
                line += chunk
            }
            return line
        }
        let result = try await body(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        await stop()
        return result
    } catch {
        await stop()
        throw error
    }
}
