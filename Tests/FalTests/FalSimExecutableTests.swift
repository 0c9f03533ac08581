import Foundation
import Testing
import TestSupport

@Suite("The fal-sim executable")
struct FalSimExecutableTests {
    /// A port in use is one line on stderr and a non-zero exit, not a crash report.
    @Test(.timeLimit(.minutes(1)))
    func aPortInUseIsOneLineAndANonZeroExit() async throws {
        let occupied = try OccupiedPort()
        let result = try await PackageExecutable.run("fal-sim", arguments: ["--host", "127.0.0.1", "--port", "\(occupied.port)"])
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(result.stderr)")
        #expect(lines.first?.contains("\(occupied.port)") == true)
        #expect(lines.first?.contains("address already in use") == true)
        #expect(!result.stderr.contains("Fatal error"))
        #expect(!result.stderr.lowercased().contains("backtrace"))
        #expect(!result.stdout.contains("listening"), "it said it listens: \(result.stdout)")
        withExtendedLifetime(occupied) {}
    }
}
