import Hummingbird
import Logging

/// The request context of every Clapper route: Hummingbird's core storage plus who is calling.
public struct ClapperRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The `X-Request-Id` of this request (accepted from the client or made here).
    public var requestID: String = ""
    /// The authenticated user, set by the auth middleware.
    public var userID: String?
    /// Set for requests carrying the admin token.
    public var isAdmin = false
    /// The body limit (`CLAPPER_MAX_BODY_BYTES`), set by the body-limit middleware.
    public var bodyLimit: Int = 1 << 20
    /// Set for an event stream request that left Hummingbird's connection handling
    /// (`EventStreamGate`): the route leaves its stream here instead of writing a body.
    var streamHandoff: StreamHandoff?

    public init(source: Source) {
        self.coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { bodyLimit }
}
