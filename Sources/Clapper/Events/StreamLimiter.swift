import Synchronization

/// Counts the event streams each user holds open on this instance and refuses one past
/// `maxPerUser` (0: no cap). A stream holds a `StreamSlot` for its lifetime; the slot is given
/// back when the stream's body ends for any reason (finished, client gone, dropped for falling
/// behind, shutdown) and, should the body never run, when the response is dropped (`deinit`).
final class StreamLimiter: Sendable {
    let maxPerUser: Int
    private let open = Mutex<[String: Int]>([:])

    init(maxPerUser: Int) {
        self.maxPerUser = maxPerUser
    }

    /// A slot for one more stream of `userID`, or nil when the user is at the cap.
    func acquire(userID: String) -> StreamSlot? {
        let granted = open.withLock { open -> Bool in
            let count = open[userID, default: 0]
            guard maxPerUser == 0 || count < maxPerUser else { return false }
            open[userID] = count + 1
            return true
        }
        return granted ? StreamSlot(limiter: self, userID: userID) : nil
    }

    /// Streams `userID` holds open now.
    func openStreams(userID: String) -> Int {
        open.withLock { $0[userID, default: 0] }
    }

    /// Streams open now, all users together.
    var totalOpen: Int {
        open.withLock { $0.values.reduce(0, +) }
    }

    fileprivate func release(userID: String) {
        open.withLock { open in
            let count = open[userID, default: 0] - 1
            open[userID] = count > 0 ? count : nil
        }
    }
}

/// One open stream's place in its user's count; released once (explicitly or on deinit).
final class StreamSlot: Sendable {
    private let limiter: StreamLimiter
    private let userID: String
    private let released = Atomic<Bool>(false)

    fileprivate init(limiter: StreamLimiter, userID: String) {
        self.limiter = limiter
        self.userID = userID
    }

    func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        limiter.release(userID: userID)
    }

    deinit { release() }
}
