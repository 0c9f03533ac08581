import AsyncHTTPClient
import FalSim
import Foundation
import TestSupport
import Hummingbird
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

/// Small helpers for the fal-sim tests: HTTP calls over real sockets, a webhook receiver,
/// and running python3.
enum FalSimTest {
    static let auth = ("Authorization", "Key sim-key:sim-secret")

    /// A quick configuration: tiny delays, retries scaled to milliseconds.
    static func configuration(_ change: (inout FalSimConfiguration) -> Void = { _ in }) -> FalSimConfiguration {
        var configuration = FalSimConfiguration(queueDelay: .milliseconds(5), runDelay: .milliseconds(10), webhookRetryScale: 0.0001)
        change(&configuration)
        return configuration
    }

    struct Reply: Sendable {
        var status: Int
        var body: [UInt8]
        var headers: HTTPHeaders
        var json: FalSimJSON? { try? FalSimJSON.parse(body) }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    static func send(
        _ method: NIOHTTP1.HTTPMethod, _ url: String, body: String? = nil,
        headers: [(String, String)] = [auth], timeout: TimeAmount = .seconds(10)
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        return Reply(status: Int(response.status.code), body: Array(buffer: bytes), headers: response.headers)
    }

    /// Submits and returns the submit reply's JSON (`request_id`, URLs…).
    static func submit(
        _ sim: FalSim, model: String, input: String, webhook: String? = nil, faults: String? = nil
    ) async throws -> FalSimJSON {
        let base = await sim.baseURL.absoluteString
        var url = "\(base)/\(model)"
        if let webhook {
            url += "?fal_webhook=" + webhook.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        }
        var headers = [auth]
        if let faults { headers.append(("X-Fal-Sim-Fault", faults)) }
        let reply = try await send(.POST, url, body: input, headers: headers)
        #expect(reply.status == 200, "submit answered \(reply.status): \(reply.text)")
        return try #require(reply.json)
    }

    /// Where this file's sibling `python/` scripts live.
    static var pythonDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("python")
    }

    /// Runs python3 with `arguments`, feeding `input` on stdin; returns status and stdout.
    /// The blocking reads and wait run on NIO's thread pool: on the two cooperative threads of a
    /// 2-core machine, a few Python start-ups at once stalled every other test for seconds.
    static func python(_ arguments: [String], input: [UInt8] = []) async throws -> (status: Int32, output: [UInt8], error: String) {
        try await NIOThreadPool.singleton.runIfActive { try pythonBlocking(arguments, input: input) }
    }

    private static func pythonBlocking(_ arguments: [String], input: [UInt8]) throws -> (status: Int32, output: [UInt8], error: String) {
        let process = SpawnedProcess()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        stdin.fileHandleForWriting.write(Data(input))
        try stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let error = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, Array(output), String(decoding: error, as: UTF8.self))
    }

    /// Fails the test with a clear message unless python3 with `cryptography` is available.
    static func requirePython(module: String? = nil) async throws {
        let check = try? await python(["-c", module.map { "import \($0)" } ?? "pass"])
        guard let check, check.status == 0 else {
            let what = module.map { "python3 with the '\($0)' package (pip install \($0))" } ?? "python3"
            Issue.record("This test needs \(what) on PATH: \(check?.error ?? "python3 not found")")
            throw FalSimTestSkip()
        }
    }
}

struct FalSimTestSkip: Error {}

/// A webhook receiver on a free port, recording every delivery; answers with the scripted
/// statuses in order, then 200.
actor FalSimWebhookReceiver {
    struct Delivery: Sendable {
        var headers: [String: String]
        var body: [UInt8]
        var json: FalSimJSON? { try? FalSimJSON.parse(body) }
    }

    private(set) var deliveries: [Delivery] = []
    private var statuses: [Int]
    private var port: Int?
    private var portWaiters: [CheckedContinuation<Int, Never>] = []
    private var countWaiters: [(Int, CheckedContinuation<Void, Never>)] = []

    init(statuses: [Int]) {
        self.statuses = statuses
    }

    var url: String {
        get async { "http://127.0.0.1:\(await boundPort())/hook" }
    }

    func boundPort() async -> Int {
        if let port { return port }
        return await withCheckedContinuation { portWaiters.append($0) }
    }

    func bound(_ port: Int) {
        self.port = port
        portWaiters.forEach { $0.resume(returning: port) }
        portWaiters = []
    }

    func record(_ delivery: Delivery) -> Int {
        deliveries.append(delivery)
        let ready = countWaiters.filter { $0.0 <= deliveries.count }
        countWaiters.removeAll { $0.0 <= deliveries.count }
        ready.forEach { $0.1.resume() }
        return statuses.isEmpty ? 200 : statuses.removeFirst()
    }

    /// Waits until `count` deliveries arrived.
    func waitFor(_ count: Int) async -> [Delivery] {
        if deliveries.count < count {
            await withCheckedContinuation { countWaiters.append((count, $0)) }
        }
        return deliveries
    }
}

func withWebhookReceiver<T>(statuses: [Int] = [], _ body: (FalSimWebhookReceiver) async throws -> T) async throws -> T {
    let receiver = FalSimWebhookReceiver(statuses: statuses)
    let router = Router()
    router.post("hook") { request, context -> Response in
        var request = request
        let bytes = try await request.collectBody(upTo: 16 * 1024 * 1024)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.rawName] = field.value }
        let status = await receiver.record(.init(headers: headers, body: Array(buffer: bytes)))
        return Response(status: .init(code: status))
    }
    let app = Application(
        router: router,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { await receiver.bound($0.localAddress?.port ?? 0) }
    )
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await app.run() }
        defer { group.cancelAll() }
        _ = await receiver.boundPort()
        return try await body(receiver)
    }
}
