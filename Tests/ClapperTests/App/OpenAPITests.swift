@testable import Clapper
import Foundation
import Testing
import TestSupport

@Suite("openapi.yaml describes every route")
struct OpenAPITests {
    /// `METHOD /path` for every operation under `paths:` (two-space path keys, four-space methods).
    static func documentedOperations() throws -> Set<String> {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("openapi.yaml"), encoding: .utf8)
        var operations: Set<String> = []
        var inPaths = false
        var path: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "paths:" { inPaths = true; continue }
            guard inPaths else { continue }
            if !line.hasPrefix(" ") && !line.isEmpty { inPaths = false; continue }
            if line.hasPrefix("  /"), !line.hasPrefix("   "), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if line.hasPrefix("    "), !line.hasPrefix("     "), let path {
                let key = line.dropFirst(4).prefix(while: { $0 != ":" })
                if ["get", "post", "put", "delete", "patch"].contains(key) {
                    operations.insert("\(key.uppercased()) \(path)")
                }
            }
        }
        return operations
    }

    @Test func theRouterAndTheSpecAgree() async throws {
        try await withRedisServer { server in
            let hooks = BuildHooks()
            _ = try await buildApplication(testConfiguration(redis: server), logger: nil, onServerRunning: { _ in }, hooks: hooks)
            let served = Set(hooks.routes.routes.map { "\($0.method.rawValue) \($0.path)" })
            let documented = try Self.documentedOperations()
            #expect(served.count > 10)
            #expect(served.subtracting(documented).sorted() == [], "routes missing from openapi.yaml")
            #expect(documented.subtracting(served).sorted() == [], "openapi.yaml operations the router does not serve")
        }
    }
}
