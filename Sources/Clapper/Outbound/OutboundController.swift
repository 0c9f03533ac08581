import Foundation
import Hummingbird

/// `/v1/admin/endpoints`: operators register the endpoints that get outbound events, list,
/// disable, enable and delete them, read their attempts, and replay messages.
struct OutboundController {
    let store: OutboundStore
    /// nil: outbound events are off; endpoints can be read and removed, not created.
    let configuration: OutboundConfiguration?
    let clock: any WallClock

    func addRoutes(to admin: RouterGroup<ClapperRequestContext>) {
        admin.post("endpoints") { request, context in try await create(request, context) }
        admin.get("endpoints") { _, _ in try await list() }
        admin.delete("endpoints/{id}") { _, context in try await delete(context) }
        admin.post("endpoints/{id}/disable") { _, context in try await setDisabled(true, context) }
        admin.post("endpoints/{id}/enable") { _, context in try await setDisabled(false, context) }
        admin.get("endpoints/{id}/attempts") { _, context in try await attempts(context) }
        admin.post("endpoints/{id}/replay") { request, context in try await replay(request, context) }
    }

    struct CreateBody: Decodable {
        var url: String
        var eventTypes: [String]?
    }

    func create(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        guard let configuration else {
            throw APIError.conflict("outbound events are off (CLAPPER_OUTBOUND_EVENTS)", code: "outbound_off")
        }
        let bytes = try await request.bodyBytes(context: context)
        guard let body = try? JSONDecoder().decode(CreateBody.self, from: Data(bytes)) else {
            throw APIError.badRequest("expected {\"url\": \"https://…\", \"eventTypes\"?: [\"job.completed\", …]}", code: "invalid_endpoint")
        }
        var types: [OutboundEventType] = []
        for name in body.eventTypes ?? [] {
            guard let type = OutboundEventType(rawValue: name) else {
                throw APIError(.unprocessableContent, code: "invalid_event_type", message: "unknown event type (known: \(OutboundEventType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            if !types.contains(type) { types.append(type) }
        }
        do {
            _ = try await configuration.addressGuard.checkOffPool(body.url)
        } catch {
            throw APIError(.unprocessableContent, code: "endpoint_url_refused", message: error.message)
        }
        let endpoint = OutboundEndpoint(
            id: "ep_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20),
            url: body.url, eventTypes: types, secret: OutboundSignature.newSecret(), disabled: false, createdAt: clock.now, failingSince: nil
        )
        try await store.save(endpoint)
        return Response.json(endpoint.json(withSecret: true), status: .created)
    }

    func list() async throws -> Response {
        var w = JSONWriter()
        w.beginObject()
        w.key("endpoints")
        w.array(try await store.endpoints()) { w, endpoint in w.raw(endpoint.json()) }
        w.endObject()
        return Response.json(w.bytes)
    }

    private func endpoint(_ context: ClapperRequestContext) async throws -> OutboundEndpoint {
        let id = try context.parameters.require("id")
        guard id.utf8.count <= 64, let endpoint = try await store.endpoint(id) else { throw APIError.notFound("no such endpoint") }
        return endpoint
    }

    func delete(_ context: ClapperRequestContext) async throws -> Response {
        let endpoint = try await endpoint(context)
        _ = try await store.delete(endpoint.id)
        return Response(status: .noContent)
    }

    func setDisabled(_ disabled: Bool, _ context: ClapperRequestContext) async throws -> Response {
        var endpoint = try await endpoint(context)
        endpoint.disabled = disabled
        if !disabled { endpoint.failingSince = nil }
        try await store.save(endpoint)
        return Response.json(endpoint.json())
    }

    func attempts(_ context: ClapperRequestContext) async throws -> Response {
        let endpoint = try await endpoint(context)
        var w = JSONWriter()
        w.beginObject()
        w.rawField("endpoint", endpoint.json())
        w.key("attempts")
        w.array(try await store.attempts(endpoint.id)) { w, attempt in w.raw(attempt) }
        w.key("exhausted")
        w.array(try await store.exhausted(endpoint.id)) { w, id in w.string(id) }
        w.endObject()
        return Response.json(w.bytes)
    }

    struct ReplayBody: Decodable { var messageIds: [String]? }

    func replay(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let endpoint = try await endpoint(context)
        let bytes = try await request.bodyBytes(context: context)
        var ids: [String]?
        if !bytes.isEmpty {
            guard let body = try? JSONDecoder().decode(ReplayBody.self, from: Data(bytes)), (body.messageIds?.count ?? 0) <= 1000,
                  body.messageIds?.allSatisfy({ $0.hasPrefix("msg_") && $0.utf8.count <= 300 }) ?? true else {
                throw APIError.badRequest("expected {\"messageIds\"?: [\"msg_…\"]} (at most 1000; none: every exhausted message)", code: "invalid_replay")
            }
            ids = body.messageIds
        }
        let count = try await store.replay(endpointID: endpoint.id, messageIDs: ids, now: clock.now)
        var w = JSONWriter()
        w.beginObject()
        w.field("replayed", count)
        w.endObject()
        return Response.json(w.bytes, status: .accepted)
    }
}
