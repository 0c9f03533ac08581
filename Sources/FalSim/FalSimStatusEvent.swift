/// One item on a status stream: a status body, or a heartbeat comment.
enum FalSimStatusEvent: Sendable {
    case status([UInt8])
    case heartbeat
}
