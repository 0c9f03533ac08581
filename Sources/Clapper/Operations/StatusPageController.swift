import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOPosix

/// The status page at `/`: static HTML, JavaScript and CSS from the `Public` resource, read once
/// at start (off the cooperative pool) and served from memory.
struct StatusPageController: Sendable {
    struct File: Sendable {
        let path: String
        let contentType: String
        let bytes: ByteBuffer
    }

    let files: [File]

    /// Page routes and the resource file each serves.
    static let layout: [(path: String, resource: String, contentType: String)] = [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/status.js", "status.js", "text/javascript; charset=utf-8"),
        ("/status.css", "status.css", "text/css; charset=utf-8"),
        ("/clapper.js", "clapper.js", "text/javascript; charset=utf-8"),
    ]

    /// Media may come from fal's CDN (or fal-sim); scripts, styles and connections only from here.
    static let contentSecurityPolicy =
        "default-src 'self'; media-src * data: blob:; img-src * data:; connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

    static func load() async throws -> StatusPageController {
        let files = try await NIOThreadPool.singleton.runIfActive {
            guard let directory = Bundle.module.url(forResource: "Public", withExtension: nil) else {
                throw CocoaError(.fileNoSuchFile)
            }
            return try layout.map { entry in
                let data = try Data(contentsOf: directory.appendingPathComponent(entry.resource))
                return File(path: entry.path, contentType: entry.contentType, bytes: ByteBuffer(bytes: data))
            }
        }
        return StatusPageController(files: files)
    }

    func addRoutes(to group: RouterGroup<ClapperRequestContext>) {
        for file in files {
            group.get(RouterPath(file.path)) { _, _ in
                Response(
                    status: .ok,
                    headers: [
                        .contentType: file.contentType,
                        .cacheControl: "no-cache",
                        .contentSecurityPolicy: Self.contentSecurityPolicy,
                        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
                    ],
                    body: ResponseBody(byteBuffer: file.bytes)
                )
            }
        }
    }
}
