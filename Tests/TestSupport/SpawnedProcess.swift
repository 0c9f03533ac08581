import Foundation
import Glibc
import Synchronization

/// A child process started with `posix_spawn`, with the part of Foundation's `Process` API the
/// tests use (executable, arguments, environment, standard streams, termination).
///
/// Not Foundation's `Process`: its `run()` on Linux (Swift 6.3.1) lists `/proc/self/fd` to find
/// the descriptors to close and copies each `dirent`'s whole 256-byte name, reading past glibc's
/// buffer when an entry ends a page: a SIGSEGV in memcpy inside `run()`, seen in 2 of 8 full
/// test runs here (fixed upstream by swift-corelibs-foundation PR #5472). The more descriptors
/// the process holds (the stream tests open thousands), the likelier. Here the child's
/// descriptors above 2 are closed by `posix_spawn_file_actions_addclosefrom_np`.
///
/// `@unchecked Sendable` proof: the configuration properties are set by the creating task
/// before `run()` and only read inside `run()`; after it, `pid` is never written again and
/// `status` is read and written only under `condition`.
public final class SpawnedProcess: @unchecked Sendable {
    public var executableURL: URL?
    public var arguments: [String] = []
    /// nil: the test process's own environment.
    public var environment: [String: String]?
    /// A `Pipe` (its reading end becomes stdin), a `FileHandle`, or nil to inherit.
    public var standardInput: Any?
    /// A `Pipe` (its writing end becomes stdout), a `FileHandle`, or nil to inherit.
    public var standardOutput: Any?
    public var standardError: Any?
    /// Called once, on a thread of its own, after the child has exited.
    public var terminationHandler: (@Sendable (SpawnedProcess) -> Void)?

    private var pid: pid_t = 0
    private let condition = NSCondition()
    private var status: Int32?

    public struct SpawnError: Error, CustomStringConvertible {
        public let description: String
    }

    public init() {}

    public var processIdentifier: Int32 { pid }

    public var isRunning: Bool {
        condition.withLock { pid != 0 && status == nil }
    }

    /// The exit code, or the signal that ended the child (as Foundation reports them).
    public var terminationStatus: Int32 {
        condition.withLock {
            guard let status else { return 0 }
            return status & 0x7F == 0 ? (status >> 8) & 0xFF : status & 0x7F
        }
    }

    public func run() throws {
        guard let path = executableURL?.path else { throw SpawnError(description: "no executable") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var parentEnds: [FileHandle] = []
        for (target, descriptor) in [(standardInput, Int32(0)), (standardOutput, 1), (standardError, 2)] {
            switch target {
            case let pipe as Pipe:
                let (childEnd, parentCopy) = descriptor == 0
                    ? (pipe.fileHandleForReading, pipe.fileHandleForReading)
                    : (pipe.fileHandleForWriting, pipe.fileHandleForWriting)
                posix_spawn_file_actions_adddup2(&actions, childEnd.fileDescriptor, descriptor)
                parentEnds.append(parentCopy)
            case let handle as FileHandle where handle === FileHandle.nullDevice:
                posix_spawn_file_actions_addopen(&actions, descriptor, "/dev/null", descriptor == 0 ? O_RDONLY : O_WRONLY, 0)
            case let handle as FileHandle:
                posix_spawn_file_actions_adddup2(&actions, handle.fileDescriptor, descriptor)
            default:
                break
            }
        }
        if let closeFrom = Self.addCloseFrom {
            _ = closeFrom(&actions, 3)
        }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let environment = self.environment ?? ProcessInfo.processInfo.environment
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var child: pid_t = 0
        let result = posix_spawn(&child, path, &actions, nil, argv, envp)
        guard result == 0 else {
            throw SpawnError(description: "posix_spawn \(path): \(String(cString: strerror(result)))")
        }
        // The child has its copies; ours would keep a reader from ever seeing end of file.
        for end in parentEnds { try? end.close() }
        condition.withLock { pid = child }
        Self.running.withLock { _ = $0.insert(child) }
        _ = Self.killAllAtExit
        Thread.detachNewThread { [self, child] in
            var raw: Int32 = 0
            while waitpid(child, &raw, 0) == -1, errno == EINTR {}
            Self.running.withLock { _ = $0.remove(child) }
            condition.withLock {
                status = raw
                condition.broadcast()
            }
            terminationHandler?(self)
        }
    }

    /// SIGTERM.
    public func terminate() {
        signal(SIGTERM)
    }

    /// Sends `number` to the child while it runs.
    public func signal(_ number: Int32) {
        condition.withLock {
            if pid != 0, status == nil { Glibc.kill(pid, number) }
        }
    }

    public func waitUntilExit() {
        condition.withLock {
            while pid != 0, status == nil { condition.wait() }
        }
    }

    /// Every child started and not yet reaped, in the whole test process.
    private static let running = Mutex<Set<pid_t>>([])

    /// A child must not outlive the tests. One that does (a test that threw or ran out of time
    /// before its kill) keeps the inherited stderr open, and whoever runs the tests waits for
    /// it forever: a CI run hung past its limit so, on a `clapper` whose Redis had gone.
    /// Installed once, with the first child: at exit every child still running is SIGKILLed.
    private static let killAllAtExit: Void = {
        atexit {
            for child in SpawnedProcess.running.withLock({ $0 }) { Glibc.kill(child, SIGKILL) }
        }
    }()

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which Swift's Glibc module does
    /// not declare; nil where it is missing (the child then inherits descriptors without CLOEXEC).
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()
}
