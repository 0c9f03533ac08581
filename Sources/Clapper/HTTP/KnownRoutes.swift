import HTTPTypes
import Hummingbird
import Synchronization

/// Every route the router serves, as method and path pattern (`/v1/jobs/{id}`), read from
/// `Router.routes` once the router is complete: 405 answers come from it, and a test checks it
/// against openapi.yaml.
final class KnownRoutes: Sendable {
    struct Route: Sendable, Hashable {
        let method: HTTPRequest.Method
        let path: String
    }

    private let list = Mutex<[Route]>([])

    var routes: [Route] { list.withLock { $0 } }

    func set<Context>(from router: Router<Context>) {
        let routes = router.routes.map { Route(method: $0.method, path: $0.path.description) }
        list.withLock { $0 = routes }
    }

    /// The methods served at a concrete path (`/v1/jobs/abc`).
    func methods(forPath path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        return routes.filter { route in
            let pattern = route.path.split(separator: "/", omittingEmptySubsequences: true)
            guard pattern.count == segments.count else { return false }
            return zip(pattern, segments).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
        }.map(\.method)
    }
}
