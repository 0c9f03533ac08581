import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// The process's entry: chooses where Swift Concurrency runs, then hands over to `ClapperCommand`.
@main
enum ClapperMain {
    /// Whether Swift Concurrency runs on NIO's loops (then Redis lives on them too).
    static let tasksRunOnEventLoops = Atomic<Bool>(false)

    static func main() async {
        // Swift Concurrency's tasks run on NIO's event loops (the ones that serve HTTP and Redis),
        // not on a pool of threads of their own: a webhook's handler, its Redis replies and its
        // response then stay on the thread its connection lives on, where each step used to hop
        // between two pools. Neither pool may block, so the rule for handlers is the same.
        // `CLAPPER_NIO_EXECUTOR=0` keeps Swift's own pool. The hook is set before any task is
        // enqueued (this runs first, on the main thread).
        if ProcessInfo.processInfo.environment["CLAPPER_NIO_EXECUTOR"] != "0",
            NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        {
            tasksRunOnEventLoops.store(true, ordering: .relaxed)
        }
        await ClapperCommand.main()
    }
}
