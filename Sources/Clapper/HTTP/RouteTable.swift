import HTTPTypes
import Hummingbird
import Synchronization

/// Every route Clapper serves, as method and path pattern (`/v1/jobs/{id}`). The router is
/// built from it, 405 answers come from it, and a test checks it against openapi.yaml.
public struct RouteTable: Sendable {
    public struct Route: Sendable, Hashable {
        public let method: HTTPRequest.Method
        public let path: String
    }

    public private(set) var routes: [Route] = []

    public init() {}

    mutating func add(_ method: HTTPRequest.Method, _ path: String) {
        routes.append(Route(method: method, path: path))
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

    /// Hummingbird's path syntax for a pattern: `{id}` becomes `:id`.
    static func routerPath(_ pattern: String) -> RouterPath {
        RouterPath(pattern.split(separator: "/").map { $0.hasPrefix("{") ? ":" + $0.dropFirst().dropLast() : $0 }.joined(separator: "/"))
    }
}

/// Registers routes on the router and in the table at once.
struct RouteRegistrar<Context: RequestContext> {
    let router: Router<Context>
    var table: RouteTable

    mutating func on(
        _ method: HTTPRequest.Method,
        _ pattern: String,
        _ handler: @escaping @Sendable (Request, Context) async throws -> Response
    ) {
        table.add(method, pattern)
        router.on(RouteTable.routerPath(pattern), method: method, use: handler)
    }
}

/// The route table, filled while the router is built and read by the error middleware.
final class RouteTableBox: Sendable {
    private let table = Mutex(RouteTable())
    func set(_ value: RouteTable) { table.withLock { $0 = value } }
    func get() -> RouteTable { table.withLock { $0 } }
}
