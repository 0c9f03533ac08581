@testable import Clapper
import Fal
@testable import FalSim
import Foundation
import S3
import Testing

/// Media custody without I/O: keys, handed-out URLs, presigning on read, the task's store
/// events, when a stream may end, and fal-sim's byte ranges.
@Suite("Media custody rules")
struct MediaLinksTests {
    static let credentials = S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")

    static func links(publicBase: String? = nil) throws -> MediaLinks {
        MediaLinks(configuration: MediaCustodyConfiguration(
            location: try S3Location(bucketURL: "http://127.0.0.1:9000/media"), credentials: credentials, keyPrefix: "kept", publicBaseURL: publicBase
        ))
    }

    @Test func keysNameTheTaskAndKeepOnlyASaneExtension() throws {
        let links = try Self.links()
        #expect(links.key(jobID: "j1", kind: .video, source: URL(string: "https://fal.media/a/b.MP4")!) == "kept/video/j1.mp4")
        #expect(links.key(jobID: "j1", kind: .audio, source: URL(string: "https://fal.media/a/b.wav?x=1")!) == "kept/audio/j1.wav")
        #expect(links.key(jobID: "j1", kind: .merge, source: URL(string: "https://fal.media/a/b")!) == "kept/merged/j1.mp4")
        #expect(links.key(jobID: "j1", kind: .audio, source: URL(string: "https://fal.media/a/b.w%2Fv")!) == "kept/audio/j1.mp3")
        #expect(MediaLinks.contentType(for: "kept/audio/j1.wav") == "audio/wav")
        #expect(try Self.links(publicBase: "https://cdn.example.com/m/").storedURL(key: "kept/video/j 1.mp4") == "https://cdn.example.com/m/kept/video/j%201.mp4")
        #expect(try Self.links().storedURL(key: "kept/video/j1.mp4") == "http://127.0.0.1:9000/media/kept/video/j1.mp4")
    }

    @Test func onlyTheBucketsURLsArePresignedAndTheRestIsUntouched() throws {
        let view = Array(#"{"jobId":"j1","videoUrl":"http://127.0.0.1:9000/media/kept/video/j1.mp4","videoSourceUrl":"https://fal.media/v.mp4","audioUrl":"https://fal.media/a.wav","prompt":"http://127.0.0.1:9000/media/ in a prompt","mergedUrl":"http://127.0.0.1:9000/media/kept/merged/j1.mp4"}"#.utf8)
        let signed = try Self.links().presigned(view)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(signed)) as? [String: String])
        for name in ["videoUrl", "mergedUrl"] {
            let url = try #require(object[name])
            #expect(url.hasPrefix("http://127.0.0.1:9000/media/kept/"), "\(name)")
            #expect(url.contains("X-Amz-Signature="), "\(name)")
            #expect(!url.contains("wJalrXUtnFEMI"), "\(name): the secret")
        }
        #expect(object["videoSourceUrl"] == "https://fal.media/v.mp4")
        #expect(object["audioUrl"] == "https://fal.media/a.wav")
        #expect(object["prompt"] == "http://127.0.0.1:9000/media/ in a prompt")
        // Public URLs, custody off, or nothing of the bucket: the same bytes.
        #expect(try Self.links(publicBase: "https://cdn.example.com").presigned(view) == view)
        #expect(MediaLinks.off.presigned(view) == view)
        let other = Array(#"{"videoUrl":"https://fal.media/v.mp4"}"#.utf8)
        #expect(try Self.links().presigned(other) == other)
        // Not JSON: left as it is, never trapped on.
        let broken = Array(#"{"videoUrl":"http://127.0.0.1:9000/media/x"#.utf8)
        #expect(try Self.links().presigned(broken) == broken)
    }

    @Test func aCompletedTaskOwesOneCopyUntilStoredOrGivenUp() {
        let t0 = Date(timeIntervalSince1970: 1_700_000_000)
        var task = JobTask(kind: .video, model: "m")
        #expect(task.apply(.stored(url: "u"), at: t0) != .changed, "nothing to copy yet")
        _ = task.apply(.accepted(requestID: "r", statusURL: nil, responseURL: nil, cancelURL: nil), at: t0)
        _ = task.apply(.completed(mediaURL: "https://fal.media/v.mp4"), at: t0)
        #expect(task.awaitsStore)
        var failed = task
        #expect(task.apply(.stored(url: "https://bucket/v.mp4"), at: t0) == .changed)
        #expect(!task.awaitsStore && task.storedURL == "https://bucket/v.mp4")
        #expect(task.apply(.stored(url: "https://bucket/other.mp4"), at: t0) != .changed, "a second copy changes nothing")
        #expect(task.apply(.storeFailed(TaskError(code: "store_failed", message: "x")), at: t0) != .changed)
        #expect(failed.apply(.storeFailed(TaskError(code: "store_failed", message: "x")), at: t0) == .changed)
        #expect(!failed.awaitsStore && failed.status == .completed)
    }

    @Test func aStreamEndsOnlyOnceNoCopyIsOwed() throws {
        func head(_ extra: String) throws -> JobChange.Head {
            try #require(JobChange.Head(view: Array(#"{"status":"completed","videoStatus":"completed","audioStatus":"completed"\#(extra)}"#.utf8)))
        }
        #expect(try head("").isFinished)
        #expect(try !head(#","videoStored":false,"videoStoreError":null"#).isFinished)
        #expect(try head(#","videoStored":true,"audioStored":true"#).isFinished)
        #expect(try head(#","videoStored":false,"videoStoreError":"the bucket refused""#).isFinished)
        #expect(try !head(#","videoStored":true,"mergeStored":false"#).isFinished)
        #expect(try head(#","videoStored":null"#).isFinished, "a task with no media owes nothing")
    }

    @Test func falSimAnswersByteRangesAsStorageDoes() {
        func answer(_ header: String) -> String {
            switch FalSimMedia.range(header, size: 1000) {
            case nil: "whole"
            case .some(nil): "416"
            case .some(.some(let (first, last))): "\(first)-\(last)"
            }
        }
        #expect(answer("bytes=0-99") == "0-99")
        #expect(answer("bytes=900-") == "900-999")
        #expect(answer("bytes=900-5000") == "900-999")
        #expect(answer("bytes=1000-1100") == "416")
        #expect(answer("bytes=5-1") == "whole")
        #expect(answer("bytes=0-1,5-6") == "whole")
        #expect(answer("items=0-1") == "whole")
        #expect(answer("bytes=-5") == "whole")
    }
}
