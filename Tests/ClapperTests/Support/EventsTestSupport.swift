import AsyncHTTPClient
@testable import Clapper
import Foundation
import Hummingbird
import Logging
import NIOCore
import Redis
import ServiceLifecycle
import Testing
import TestSupport

/// One block of a server-sent event stream, as a client sees it.
struct SSEFrame: Sendable, Equatable {
    var event: String?
    var id: String?
    var data: String?
    var retry: Int?
    var comment: String?
    /// How many `data:` lines it had (always 1 for ours).
    var dataLines = 0
}

/// A live SSE response read with AsyncHTTPClient, frame by frame (blank-line separated).
/// Not Sendable: read it in the task that opened it. Dropping it closes the connection.
final class SSEReader {
    let status: Int
    let headers: [(String, String)]
    private var iterator: HTTPClientResponse.Body.AsyncIterator
    private var pending: [UInt8] = []
    /// Where to look for the next blank line (bytes before it were scanned already).
    private var scanned = 0
    private(set) var ended = false

    init(client: HTTPClient, port: Int, path: String, headers: [String: String] = [:]) async throws {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await client.execute(request, timeout: .seconds(120))
        self.status = Int(response.status.code)
        self.headers = response.headers.map { ($0.name, $0.value) }
        self.iterator = response.body.makeAsyncIterator()
    }

    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }

    /// The next frame; nil when the server ended the stream (cleanly or not).
    func next() async throws -> SSEFrame? {
        while true {
            if let frame = takeFrame() { return frame }
            guard !ended else { return nil }
            do {
                guard let buffer = try await iterator.next() else {
                    ended = true
                    continue
                }
                pending.append(contentsOf: buffer.readableBytesView)
            } catch {
                ended = true
            }
        }
    }

    /// The next frame that is an event (skips comments and bare `retry:` blocks).
    func nextEvent() async throws -> SSEFrame? {
        while let frame = try await next() {
            if frame.event != nil || frame.data != nil { return frame }
        }
        return nil
    }

    /// The raw body text that arrived but was not parsed yet (for error messages).
    var pendingText: String { String(decoding: pending, as: UTF8.self) }

    private func takeFrame() -> SSEFrame? {
        // A frame ends with a blank line; ours use \n only.
        var end: Int?
        pending.withUnsafeBufferPointer { bytes in
            var index = max(0, scanned - 1)
            while index + 1 < bytes.count {
                if bytes[index] == 0x0A, bytes[index + 1] == 0x0A {
                    end = index
                    return
                }
                index += 1
            }
        }
        guard let end else {
            scanned = pending.count
            return nil
        }
        let block = String(decoding: pending[..<end], as: UTF8.self)
        pending.removeFirst(end + 2)
        scanned = 0
        var frame = SSEFrame()
        for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix(":") {
                frame.comment = String(line.dropFirst().drop { $0 == " " })
                continue
            }
            let (field, value): (Substring, Substring)
            if let colon = line.firstIndex(of: ":") {
                field = line[..<colon]
                var rest = line[line.index(after: colon)...]
                if rest.first == " " { rest = rest.dropFirst() }
                value = rest
            } else {
                field = line
                value = ""
            }
            switch field {
            case "event": frame.event = String(value)
            case "id": frame.id = String(value)
            case "data":
                frame.data = frame.data.map { $0 + "\n" + value } ?? String(value)
                frame.dataLines += 1
            case "retry": frame.retry = Int(value)
            default: break
            }
        }
        return frame
    }
}

/// The fields of a job view the tests look at.
struct ViewHead: Decodable, Equatable {
    let jobId: String
    let status: String
    let version: Int
    let prompt: String?
}

extension SSEFrame {
    var view: ViewHead? { data.flatMap { try? JSONDecoder().decode(ViewHead.self, from: Data($0.utf8)) } }
}

/// Writes jobs straight through the repository (the same Lua step the jobs API uses).
struct TestJobs: Sendable {
    let repository: JobRepository
    let signer: EventTokenSigner

    init(redis: RedisClient, configuration: ClapperConfiguration) {
        repository = JobRepository(redis: redis, keys: JobKeys(), eventsMaxLength: configuration.eventsMaxLength)
        signer = EventTokenSigner(secret: configuration.webhookSecret)
    }

    static func view(jobID: String, status: String, version: Int, prompt: String = "a prompt", extra: String = "") -> [UInt8] {
        let encoder = JSONEncoder()
        let prompt = String(decoding: try! encoder.encode(prompt), as: UTF8.self)
        let id = String(decoding: try! encoder.encode(jobID), as: UTF8.self)
        return Array(#"{"jobId":\#(id),"status":"\#(status)","version":\#(version),"prompt":\#(prompt)\#(extra)}"#.utf8)
    }

    /// Creates the job (version 1, queued); returns its stream id.
    @discardableResult
    func create(_ jobID: String, user: String, prompt: String = "a prompt") async throws -> String {
        try await write(jobID, user: user, from: 0, status: "queued", prompt: prompt, index: [.addToUser(atMilliseconds: Int64(Date().timeIntervalSince1970 * 1000))])
    }

    /// Moves the job from `version` to `version + 1` with `status`; returns the change's stream id.
    @discardableResult
    func write(_ jobID: String, user: String, from version: Int, status: String, prompt: String = "a prompt", extra: String = "", index: [IndexChange] = []) async throws -> String {
        let result = try await repository.write(JobWrite(
            jobID: jobID, userID: user, expectedVersion: version, doc: Array("{}".utf8),
            view: Self.view(jobID: jobID, status: status, version: version + 1, prompt: prompt, extra: extra), indexChanges: index
        ))
        guard case .written(let streamID, _) = result else { throw TestFailure("write of \(jobID) v\(version + 1) failed: \(result)") }
        return streamID
    }

    func jobPath(_ jobID: String, user: String, now: Date = Date()) -> String {
        "/v1/jobs/\(jobID)/events?token=\(signer.token(scope: .job(jobID), userID: user, now: now))"
    }

    func userPath(_ user: String) -> String {
        "/v1/events?token=\(signer.token(scope: .user, userID: user, now: Date()))"
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func uniqueID(_ prefix: String = "job") -> String {
    "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}

/// Waits (polling, with a deadline) until `condition` holds.
func eventually(_ what: String, within limit: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TestFailure("timed out waiting for \(what)")
}

func openFileCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

/// Open files of this process (from /proc/self/fd) that are TCP sockets with `port` at either
/// end: the gateway's listener, its accepted connections and the test clients' connections.
/// Unlike the whole process's count, other tests running in parallel do not move it.
func openSocketCount(port: Int) -> Int {
    var inodes = Set<String>()
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        // procfs files report size 0: read to the end, not one page.
        guard let data = FileHandle(forReadingAtPath: table)?.readDataToEndOfFile() else { continue }
        let text = String(decoding: data, as: UTF8.self)
        for line in text.split(separator: "\n").dropFirst() {
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            guard columns.count > 9 else { continue }
            let ports = [columns[1], columns[2]].compactMap { $0.split(separator: ":").last.flatMap { Int($0, radix: 16) } }
            if ports.contains(port) { inodes.insert(String(columns[9])) }
        }
    }
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return fds.filter { fd in
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)"),
              target.hasPrefix("socket:[") else { return false }
        return inodes.contains(String(target.dropFirst(8).dropLast()))
    }.count
}

func makeHTTPClient() -> HTTPClient {
    var configuration = HTTPClient.Configuration()
    configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 2000
    return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
}
