import Foundation
import Redis

/// A throwaway `redis-server` on a free loopback port, with its data in a temporary folder.
/// Tests get one through `withRedisServer`, which stops it when the body returns.
public final class RedisServer: Sendable {
    public let port: Int
    public let directory: URL
    private let process: LockedProcess

    public var url: RedisURL { RedisURL(host: "127.0.0.1", port: port) }
    public var urlString: String { "redis://127.0.0.1:\(port)" }

    public struct Missing: Error, CustomStringConvertible {
        public var description: String {
            "redis-server was not found on PATH. Install it (apt-get install redis-server) or run ops/test, which does."
        }
    }

    private init(port: Int, directory: URL, process: LockedProcess) {
        self.port = port
        self.directory = directory
        self.process = process
    }

    /// Starts a server on a free port and waits until it answers.
    public static func start(extraArguments: [String] = []) async throws -> RedisServer {
        guard let executable = findExecutable("redis-server") else { throw Missing() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("clapper-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try FreePort.find()
            let server = RedisServer(port: port, directory: directory, process: LockedProcess(executable: executable, arguments: arguments(port: port, directory: directory) + extraArguments))
            do {
                try await server.launch()
                return server
            } catch {
                lastError = error
                server.stop()
            }
        }
        throw lastError ?? Missing()
    }

    private static func arguments(port: Int, directory: URL) -> [String] {
        ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory.path, "--daemonize", "no", "--loglevel", "warning", "--enable-debug-command", "local"]
    }

    private func launch() async throws {
        try process.start()
        try await waitUntilReady()
    }

    /// The server's process id (to pause it with SIGSTOP in tests).
    public var pid: Int32 { process.pid }

    /// Kills the server (SIGKILL: as if it crashed) and waits for it to exit.
    public func stop() {
        process.kill()
    }

    /// Starts the server again on the same port.
    public func restart() async throws {
        process.kill()
        try await launch()
    }

    private func waitUntilReady() async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if FreePort.canConnect(port: port) { return }
            guard process.isRunning else { throw ServerExited(port: port) }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw ServerExited(port: port)
    }

    struct ServerExited: Error, CustomStringConvertible {
        let port: Int
        var description: String { "redis-server on port \(port) did not start" }
    }

    deinit {
        process.kill()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Runs `body` with a fresh `redis-server`, stopped afterwards.
public func withRedisServer<T>(_ body: (RedisServer) async throws -> T) async throws -> T {
    let server = try await RedisServer.start()
    defer { server.stop() }
    return try await body(server)
}

/// Runs `body` with a client connected to a fresh `redis-server`; both are closed afterwards.
public func withRedis<T>(
    poolSize: Int = 4,
    poolTimeout: Duration = .seconds(2),
    commandTimeout: Duration = .seconds(2),
    _ body: (RedisClient, RedisServer) async throws -> T
) async throws -> T {
    try await withRedisServer { server in
        let client = RedisClient(configuration: RedisConfiguration(url: server.url, poolSize: poolSize, poolTimeout: poolTimeout, commandTimeout: commandTimeout))
        do {
            let result = try await body(client, server)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }
}

func findExecutable(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/local/bin"]
    for dir in directories {
        let candidate = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// A child process whose handle is guarded by a lock.
///
/// `@unchecked Sendable` proof: `process` is only read or replaced while `lock` is held.
final class LockedProcess: @unchecked Sendable {
    private let lock = NSLock()
    private var process: SpawnedProcess?
    let executable: String
    let arguments: [String]

    init(executable: String, arguments: [String]) {
        self.executable = executable
        self.arguments = arguments
    }

    func start() throws {
        let process = SpawnedProcess()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        lock.withLock { self.process = process }
    }

    var isRunning: Bool { lock.withLock { process?.isRunning ?? false } }

    var pid: Int32 { lock.withLock { process?.processIdentifier ?? 0 } }

    func kill() {
        let process = lock.withLock { () -> SpawnedProcess? in
            defer { self.process = nil }
            return self.process
        }
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGCONT)
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
