import Fal
import Foundation
import S3

/// Media custody's names and URLs: the bucket key of a task's media, the URL stored for it, and,
/// when copies are handed out as presigned URLs, the view with those URLs signed anew (on every
/// read of a job and every change streamed; the stored view keeps the unsigned object URL).
/// With custody off (`configuration` nil) every view passes through unchanged.
struct MediaLinks: Sendable {
    let configuration: MediaCustodyConfiguration?
    /// Where presign dates come from.
    var clock: any WallClock = SystemWallClock()

    static let off = MediaLinks(configuration: nil)

    /// `{prefix}/video/{jobId}.{ext}` (`audio/…`, `merged/…`), the extension from fal's URL.
    func key(jobID: String, kind: TaskKind, source: URL) -> String {
        let folder = kind == .merge ? "merged" : kind.rawValue
        let ext = source.pathExtension.lowercased()
        let safe = (1...5).contains(ext.utf8.count) && ext.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) }
        let name = "\(jobID).\(safe ? ext : Self.defaultExtension(kind))"
        let prefix = configuration?.keyPrefix ?? ""
        return prefix.isEmpty ? "\(folder)/\(name)" : "\(prefix)/\(folder)/\(name)"
    }

    static func defaultExtension(_ kind: TaskKind) -> String { kind == .audio ? "mp3" : "mp4" }

    /// The content type a copy gets when fal's answer names none.
    static func contentType(for key: String) -> String {
        switch URL(fileURLWithPath: key).pathExtension {
        case "mp4": "video/mp4"
        case "webm": "video/webm"
        case "mov": "video/quicktime"
        case "wav": "audio/wav"
        case "mp3": "audio/mpeg"
        case "m4a": "audio/mp4"
        case "ogg": "audio/ogg"
        default: "application/octet-stream"
        }
    }

    /// The URL kept in the job for the copy at `key`: `{publicBaseURL}/{key}`, or the object's own
    /// (unsigned) URL, which every read presigns.
    func storedURL(key: String) throws(S3Error) -> String {
        guard let configuration else { throw S3Error(.invalidKey, "media custody is off") }
        let path = try S3Location.encodedKey(key)
        if let base = configuration.publicBaseURL {
            return base.hasSuffix("/") ? base + path : base + "/" + path
        }
        return try configuration.location.objectURL(key: key).absoluteString
    }

    /// The bucket's own URL prefix, when copies are presigned on read.
    private var presignedPrefix: String? {
        guard let configuration, configuration.publicBaseURL == nil else { return nil }
        let base = configuration.location.bucketURL.absoluteString
        return base.hasSuffix("/") ? base : base + "/"
    }

    static let urlFields: Set<String> = ["videoUrl", "audioUrl", "mergedUrl"]

    /// `view` with each of its media URLs that points into the bucket replaced by a presigned GET
    /// URL valid for `presignSeconds` from now. Unchanged when custody is off, URLs are public, or
    /// nothing in it points into the bucket.
    func presigned(_ view: [UInt8]) -> [UInt8] {
        guard let configuration, let prefix = presignedPrefix, view.firstRange(of: Array(prefix.utf8)) != nil,
              let members = try? RawJSON.members(of: view) else { return view }
        let signer = AWSSigV4(credentials: configuration.credentials, region: configuration.region)
        let now = clock.now
        var out = view
        // From the last member back, so earlier offsets stay valid while splicing.
        for member in members.reversed() where Self.urlFields.contains(member.key) {
            guard let value = RawJSON.string(member.value), value.hasPrefix(prefix), let url = URL(string: value),
                  let signed = try? signer.presign(url: url, expiresIn: configuration.presignSeconds, at: now) else { continue }
            var w = JSONWriter()
            w.string(signed.url.absoluteString)
            out.replaceSubrange(member.value.startIndex..<member.value.endIndex, with: w.bytes)
        }
        return out
    }
}
