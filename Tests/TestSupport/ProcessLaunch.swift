import Foundation

/// Starts child processes one at a time. swift-corelibs-foundation's `Process.run()` crashed
/// (a bad pointer in memcpy inside `run()`) while tests launched redis-server, clapper and
/// python processes from several threads at once in a fresh-clone CI run; launching under one
/// lock costs a few milliseconds per launch and removes the race.
public enum ProcessLaunch {
    private static let lock = NSLock()

    public static func run(_ process: Process) throws {
        try lock.withLock { try process.run() }
    }
}
