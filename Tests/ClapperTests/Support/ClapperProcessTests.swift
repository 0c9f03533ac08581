import FalSim
import Foundation
import Testing
import TestSupport

@Suite("Test support: a gateway process never outlives its test")
struct ClapperProcessTests {
    /// A test that throws between starting `clapper` and killing it drops the last reference:
    /// the process is SIGKILLed then, not left running on a Redis that is about to go (CI hung
    /// so once, on a child writing "reconcile round failed" into its log for ever). Without the
    /// deinit this test waits out its time limit.
    @Test(.timeLimit(.minutes(1)))
    func aDroppedGatewayProcessIsKilled() async throws {
        let binary = try ClapperProcess.binary()
        try await withRedisServer { server in
            try await withFalSim(configuration: SimSetup().configuration) { sim in
                let port = try FreePort.find()
                let environment = await ClapperProcess.environment(redis: server, sim: sim, ["CLAPPER_HTTP_PORT": "\(port)"])
                let spawned = try await Self.startAndDrop(binary: binary, environment: environment, port: port)
                // At the time limit the test ends the process itself, with SIGTERM: it exits 0,
                // which fails the expectation below.
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                        Thread.detachNewThread {
                            spawned.waitUntilExit()
                            done.resume()
                        }
                    }
                } onCancel: {
                    spawned.terminate()
                }
                #expect(spawned.terminationStatus == SIGKILL)
            }
        }
    }

    /// Starts `clapper`, waits until it serves, and lets go of it as a failing test would.
    private static func startAndDrop(binary: URL, environment: [String: String], port: Int) async throws -> SpawnedProcess {
        let process = try ClapperProcess(binary: binary, environment: environment)
        try await process.waitUntilReady(port: port)
        #expect(process.process.isRunning)
        return process.process
    }
}
