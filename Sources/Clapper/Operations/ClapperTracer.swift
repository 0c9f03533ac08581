import Tracing

/// Spans of a job's path (create, submit, webhook, apply, publish, stream delivery), or nothing:
/// with no tracer (no OTLP endpoint configured) every call runs its body at once, with no span,
/// no task-local binding and no trace context written anywhere.
///
/// A job's spans cross instances through Redis: the create span's W3C `traceparent` is kept in
/// the job document, a submit span's in its task, a publish span's in the published change.
struct ClapperTracer: Sendable {
    let tracer: (any Tracer)?

    static let off = ClapperTracer(tracer: nil)

    var isOn: Bool { tracer != nil }

    /// Runs `body` inside a span named `name`, a child of `parent` (a `traceparent` value) when
    /// given and readable, else of the current span (if any). The span ends when `body` returns;
    /// an error thrown marks it failed. `body` gets nil when tracing is off.
    func span<T>(
        _ name: String,
        kind: SpanKind = .internal,
        parent: String? = nil,
        _ body: (_ span: (any Span)?) async throws -> T
    ) async rethrows -> T {
        guard let tracer else { return try await body(nil) }
        var context = ServiceContext.current ?? .topLevel
        if let parent {
            var extracted = ServiceContext.topLevel
            tracer.extract(["traceparent": parent], into: &extracted, using: TraceCarrier())
            // A stored value that does not parse leaves the current parent in place.
            if traceparent(of: extracted) != nil { context = extracted }
        }
        let span = tracer.startSpan(name, context: context, ofKind: kind, at: DefaultTracerClock.now, function: #function, file: #fileID, line: #line)
        defer { span.end() }
        do {
            return try await ServiceContext.$current.withValue(span.context) { try await body(span) }
        } catch {
            span.recordError(error)
            span.setStatus(SpanStatus(code: .error))
            throw error
        }
    }

    /// The W3C `traceparent` naming `context`'s span, if tracing is on and it has one.
    func traceparent(of context: ServiceContext) -> String? {
        guard let tracer else { return nil }
        var carrier: [String: String] = [:]
        tracer.inject(context, into: &carrier, using: TraceCarrier())
        return carrier["traceparent"]
    }

    /// `traceparent` and `tracestate` from request headers (`get` reads one by lower-case name),
    /// as the context a server span starts in; nil when tracing is off or none was sent.
    func extract(headers get: (String) -> String?) -> ServiceContext? {
        guard let tracer, let traceparent = get("traceparent") else { return nil }
        var carrier = ["traceparent": traceparent]
        if let state = get("tracestate") { carrier["tracestate"] = state }
        var context = ServiceContext.topLevel
        tracer.extract(carrier, into: &context, using: TraceCarrier())
        return context
    }

    /// Links `span` to the span a stored `traceparent` names (e.g. a webhook's to its submit).
    func link(_ span: (any Span)?, to traceparent: String?) {
        guard let tracer, let span, let traceparent else { return }
        var context = ServiceContext.topLevel
        tracer.extract(["traceparent": traceparent], into: &context, using: TraceCarrier())
        guard self.traceparent(of: context) != nil else { return }
        span.addLink(SpanLink(context: context, attributes: [:]))
    }
}

/// A `[String: String]` as the carrier of trace headers (lower-case names).
struct TraceCarrier: Extractor, Injector {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}
