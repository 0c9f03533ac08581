import AsyncHTTPClient
@testable import Clapper
import Crypto
import Fal
import FalSim
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NIOCore
import Redis
import S3
import Testing
import TestSupport

/// Media custody end to end: fal-sim's real media copied into a real S3-speaking server (moto in
/// server mode with its SigV4 checks on, behind a proxy that can answer SlowDown).
@Suite("Media custody", .serialized)
struct MediaCustodyTests {
    @Test(.timeLimit(.minutes(2)))
    func finishedMediaIsCopiedIntoTheBucketThroughSlowDowns() async throws {
        try await withS3(slowdown: 3) { s3 in
            let options = GatewayOptions(fal: .sim(SimSetup().configuration), gateways: 2) {
                // 1 KiB parts: fal-sim's 2,345-byte MP4 goes up in three parts, its WAV in dozens.
                $0.media = MediaCustodyConfiguration(
                    location: try! S3Location(bucketURL: s3.bucketURL), credentials: s3.credentials,
                    partSize: 1024, interval: .milliseconds(20)
                )
            }
            try await withGateway(options) { stack in
                let user = "custody-\(UUID().uuidString.prefix(8))"
                let token = TestUsers.token(user)
                // The stream is on the gateway that did not create the job.
                let stream = try await SSEReader(client: stack.http, port: stack.gateways[1].port, path: "/v1/events", headers: ["Authorization": "Bearer \(token)"])
                let created = try await stack.gateway.send(.POST, "/v1/jobs", token: token, body: jobBody("a kept job"))
                let jobID = try #require(created.json["jobId"] as? String, "\(created.text)")

                // The stream sees the switch from fal's URL to the bucket's, then the end.
                var views: [[String: Any]] = []
                while let frame = try await stream.nextEvent() {
                    guard let data = frame.data, let view = (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any],
                          view["jobId"] as? String == jobID else { continue }
                    views.append(view)
                    if isFinished(view), ["video", "audio", "merge"].allSatisfy({ view["\($0)Stored"] as? Bool == true }) { break }
                }
                let last = try #require(views.last)
                #expect(views.contains { $0["status"] as? String == "completed" && $0["videoStored"] as? Bool == false }, "no change before the copy")
                let prefix = "\(s3.bucketURL)/clapper/"
                for (name, source, folder, ext) in [("videoUrl", "videoSourceUrl", "video", "mp4"), ("audioUrl", "audioSourceUrl", "audio", "wav"), ("mergedUrl", "mergedSourceUrl", "merged", "mp4")] {
                    let url = try #require(last[name] as? String, "\(name): \(last)")
                    #expect(url.hasPrefix("\(prefix)\(folder)/\(jobID).\(ext)?"), "\(name): \(url)")
                    #expect(url.contains("X-Amz-Signature="))
                    #expect(url.contains("X-Amz-Expires=3600"))
                    let fal = try #require(last[source] as? String)
                    #expect(fal.hasPrefix(await stack.sim.baseURL.absoluteString), "\(source): \(fal)")
                }

                // The bucket holds exactly one object per task, byte for byte fal's.
                let objects = try await s3.objects()
                #expect(Set(objects.map(\.key)) == ["clapper/video/\(jobID).mp4", "clapper/audio/\(jobID).wav", "clapper/merged/\(jobID).mp4"])
                for object in objects {
                    let folder = object.key.split(separator: "/")[1]
                    let sourceName = folder == "merged" ? "mergedSourceUrl" : "\(folder)SourceUrl"
                    let original = try await Self.get(try #require(last[sourceName] as? String), client: stack.http)
                    #expect(object.size == original.count, "\(object.key)")
                    #expect(object.md5 == Insecure.MD5.hash(data: original).map { String(format: "%02x", $0) }.joined(), "\(object.key)")
                    #expect(object.contentType == (folder == "audio" ? "audio/wav" : "video/mp4"), "\(object.key)")
                }
                // The bucket checked every signature; SlowDown was answered and went by.
                let log = try await s3.log()
                #expect(log.filter { $0.status == 503 }.count == 3)
                #expect(!log.contains { $0.status == 403 }, "a signature was refused")
                // In ranges of 1 KiB: 3 parts per MP4 (2,345 bytes), 32 for the 2 s WAV (32,044).
                #expect(log.filter { $0.method == "PUT" && $0.path.contains("partNumber=") && $0.status == 200 }.count >= 3 + 3 + 32)
                // Each key completed once, whichever of the two instances copied it.
                let completes = log.filter { $0.method == "POST" && $0.path.contains("uploadId=") && $0.status == 200 }.map { $0.path.split(separator: "?")[0] }
                #expect(completes.count == 3 && Set(completes).count == 3, "\(completes)")

                // Stored unsigned; every read signs anew.
                let repository = stack.jobs.repository
                let stored = try #require(try await repository.redis.send(RedisCommand("HGET", repository.keys.job(jobID), "view")).bytes)
                #expect(!String(decoding: stored, as: UTF8.self).contains("X-Amz-Signature"))
                let read = try await stack.gateway.send(.GET, "/v1/jobs/\(jobID)", token: token)
                let readURL = try #require(read.json["videoUrl"] as? String)
                let date = try #require(URLComponents(string: readURL)?.queryItems?.first { $0.name == "X-Amz-Date" }?.value)
                let formatter = DateFormatter()
                formatter.locale = Locale(identifier: "en_US_POSIX")
                formatter.timeZone = TimeZone(identifier: "UTC")
                formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
                let signedAt = try #require(formatter.date(from: date))
                #expect(abs(signedAt.timeIntervalSinceNow) < 30)
            }
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aCopyThatFailsForGoodFailsNothingElse() async throws {
        try await withS3 { s3 in
            let wrong = S3Credentials(accessKeyID: s3.credentials.accessKeyID, secretAccessKey: "not-" + s3.credentials.secretAccessKey)
            let options = GatewayOptions.sim(SimSetup()) {
                $0.media = MediaCustodyConfiguration(
                    location: try! S3Location(bucketURL: s3.bucketURL), credentials: wrong,
                    publicBaseURL: "https://media.example.com/kept", deadline: .milliseconds(1500), interval: .milliseconds(20)
                )
            }
            try await withGateway(options) { stack in
                let user = "custody-fail-\(UUID().uuidString.prefix(8))"
                let created = try await stack.gateway.send(.POST, "/v1/jobs", token: TestUsers.token(user), body: jobBody("a job the bucket refuses", audio: false))
                let jobID = try #require(created.json["jobId"] as? String, "\(created.text)")
                let view = try await waitForJob(jobID, gateway: stack.gateway, redis: stack.server, token: TestUsers.token(user)) { $0["videoStoreError"] is String }
                #expect(view["status"] as? String == "completed")
                #expect(view["videoStored"] as? Bool == false)
                #expect((view["videoStoreError"] as? String)?.contains("SignatureDoesNotMatch") == true, "\(view)")
                // fal's media is still handed out, and nothing reached the bucket.
                #expect(view["videoUrl"] as? String == view["videoSourceUrl"] as? String)
                #expect(try await s3.objects().isEmpty)
                // No secret in what the job says.
                #expect(!"\(view)".contains(s3.credentials.secretAccessKey))
            }
        }
    }

    /// A 9.6 MB file (fal-sim's WAV of 600 s) in 1 MiB parts: no request to the bucket carries
    /// more than one part, and the object is whole.
    @Test(.timeLimit(.minutes(2)))
    func aLargeFileGoesUpOnePartAtATime() async throws {
        try await withS3 { s3 in
            try await withFalSim(configuration: SimSetup().configuration) { sim in
                let source = try #require(URL(string: "\(await sim.baseURL.absoluteString)/_sim/media/audio/600000/large.wav"))
                let configuration = MediaCustodyConfiguration(location: try S3Location(bucketURL: s3.bucketURL), credentials: s3.credentials, partSize: 1 << 20)
                let copier = MediaCopier(configuration: configuration, transport: URLSessionTransport())
                let copied = try await copier.copy(from: source, to: "large/audio.wav", contentType: "audio/wav")
                #expect(copied == 44 + 600 * 8000 * 2)
                let parts = try await s3.log().filter { $0.path.contains("partNumber=") && $0.status == 200 }
                #expect(parts.count == (copied + (1 << 20) - 1) >> 20)
                #expect(parts.map(\.bytes).max() == 1 << 20)
                #expect(try await s3.objects().first?.size == copied)
                print("media custody: \(copied) bytes in \(parts.count) parts, largest request \(parts.map(\.bytes).max() ?? 0) bytes")
            }
        }
    }

    static func get(_ url: String, client: HTTPClient) async throws -> [UInt8] {
        let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        return Array(try await response.body.collect(upTo: 64 << 20).readableBytesView)
    }
}

/// `s3_server.py`: moto behind the SlowDown proxy.
struct S3TestServer: Sendable {
    let port: Int
    let credentials: S3Credentials
    let bucket: String
    var bucketURL: String { "http://127.0.0.1:\(port)/\(bucket)" }

    struct Object: Sendable { var key: String, size: Int, contentType: String?, md5: String }
    struct Logged: Sendable { var method: String, path: String, status: Int, bytes: Int }

    private func json(_ path: String) async throws -> [[String: Any]] {
        let (data, _) = try await URLSession.shared.data(from: try #require(URL(string: "http://127.0.0.1:\(port)\(path)")))
        return try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []
    }

    func objects() async throws -> [Object] {
        try await json("/_objects").compactMap { item in
            guard let key = item["key"] as? String, let size = item["size"] as? Int, let md5 = item["md5"] as? String else { return nil }
            return Object(key: key, size: size, contentType: item["contentType"] as? String, md5: md5)
        }
    }

    func log() async throws -> [Logged] {
        try await json("/_log").compactMap { item in
            guard let method = item["method"] as? String, let path = item["path"] as? String, let status = item["status"] as? Int else { return nil }
            return Logged(method: method, path: path, status: status, bytes: item["bytes"] as? Int ?? 0)
        }
    }
}

func withS3<T: Sendable>(slowdown: Int = 0, _ body: (S3TestServer) async throws -> T) async throws -> T {
    try await withPythonService("s3_server.py", arguments: ["--slowdown", String(slowdown)]) { line in
        let info = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "s3_server said: \(line)")
        let server = S3TestServer(
            port: try #require(info["port"] as? Int),
            credentials: S3Credentials(accessKeyID: try #require(info["keyId"] as? String), secretAccessKey: try #require(info["secret"] as? String)),
            bucket: try #require(info["bucket"] as? String)
        )
        return try await body(server)
    }
}
