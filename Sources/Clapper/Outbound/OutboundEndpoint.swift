import Foundation

/// An operator's endpoint for outbound events (admin API `/v1/admin/endpoints`).
struct OutboundEndpoint: Codable, Sendable, Hashable {
    var id: String
    var url: String
    /// The event types it gets; empty: all.
    var eventTypes: [OutboundEventType]
    /// `whsec_…`: shown once, when the endpoint is created.
    var secret: String
    var disabled: Bool
    var createdAt: Date
    /// Since when every attempt to it has failed (nil: the last one succeeded, or none yet).
    var failingSince: Date?

    func wants(_ type: OutboundEventType) -> Bool { eventTypes.isEmpty || eventTypes.contains(type) }

    /// Its public JSON; the secret only when `withSecret`.
    func json(withSecret: Bool = false) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("id", id)
        w.field("url", url)
        w.key("eventTypes")
        w.array(eventTypes) { w, type in w.string(type.rawValue) }
        if withSecret { w.field("secret", secret) }
        w.field("disabled", disabled)
        w.field("createdAt", Timestamp.iso8601(createdAt))
        w.field("failingSince", failingSince.map(Timestamp.iso8601))
        w.endObject()
        return w.bytes
    }
}
