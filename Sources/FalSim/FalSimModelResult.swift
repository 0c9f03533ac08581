/// What a simulated model produced: its output, or its own error status and body.
enum FalSimModelResult: Sendable, Equatable {
    case output(FalSimJSON)
    case failure(status: Int, body: FalSimJSON)
}
