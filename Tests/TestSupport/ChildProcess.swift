import Foundation

/// A TCP listener on a free loopback port, held open until `close()` (or deinit): something
/// for a server under test to collide with.
public final class OccupiedPort: Sendable {
    public let port: Int
    private let fd: Int32

    public init() throws {
        let (fd, port) = try FreePort.bindLoopback()
        guard listen(fd, 4) == 0 else {
            Foundation.close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        self.fd = fd
        self.port = port
    }

    deinit { Foundation.close(fd) }
}

/// A loopback port bound and not listening, held until deinit: connections to it are refused, and
/// no other test can take it meanwhile (a port from `FreePort` may be taken by a parallel test).
public final class RefusingPort: Sendable {
    public let port: Int
    private let fd: Int32

    public init() throws {
        (fd, port) = try FreePort.bindLoopback()
    }

    deinit { Foundation.close(fd) }
}

/// Runs a package executable (`clapper`, `fal-sim`) from the build folder to its end.
public enum PackageExecutable {
    public struct Missing: Error, CustomStringConvertible {
        public let description: String
    }

    /// `.build/<config>/<name>`, next to the test bundle (`swift build --build-tests` builds it).
    public static func url(_ name: String) throws -> URL {
        let bundleFolder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidates = [bundleFolder.appendingPathComponent(name), root.appendingPathComponent(".build/debug/\(name)")]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw Missing(description: "no \(name) executable at \(candidates.map(\.path)); run swift build --build-tests")
        }
        return found
    }

    /// Runs `name` with `arguments` and exactly `environment` (plus PATH); returns its exit
    /// status and what it wrote, once it has exited.
    public static func run(_ name: String, arguments: [String] = [], environment: [String: String] = [:]) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await runToEnd(
            try url(name), arguments: arguments,
            environment: environment.merging(["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]) { old, _ in old }
        )
    }

    /// Runs `executable` to its end (with `killAfter`, SIGKILLed then) and returns its exit status
    /// and what it wrote. Output is read once it has exited: short outputs fit in a pipe.
    /// `environment` nil inherits this process's; stdin is empty.
    public static func runToEnd(
        _ executable: URL, arguments: [String], environment: [String: String]? = nil, killAfter: Duration? = nil
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        let process = SpawnedProcess()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardInput = FileHandle.nullDevice
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        let (exited, continuation) = AsyncStream.makeStream(of: Int32.self)
        process.terminationHandler = { continuation.yield($0.terminationStatus); continuation.finish() }
        try process.run()
        let watchdog = killAfter.map { limit in
            Task {
                try await Task.sleep(for: limit)
                process.signal(SIGKILL)
            }
        }
        var statuses = exited.makeAsyncIterator()
        let status = await statuses.next() ?? -1
        watchdog?.cancel()
        let out = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (status, out, err)
    }
}
