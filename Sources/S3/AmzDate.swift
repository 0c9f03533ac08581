import Foundation

/// A signing time in SigV4's two forms: `20130524T000000Z` (x-amz-date) and `20130524` (the scope's date).
struct AmzDate: Sendable, Equatable {
    /// `yyyyMMdd'T'HHmmss'Z'`, in UTC.
    let timestamp: String
    /// `yyyyMMdd`, in UTC.
    var dateStamp: String { String(timestamp.prefix(8)) }

    init(_ date: Date) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func padded(_ value: Int?, _ width: Int) -> String {
            let digits = String(value ?? 0)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        timestamp = padded(parts.year, 4) + padded(parts.month, 2) + padded(parts.day, 2) + "T"
            + padded(parts.hour, 2) + padded(parts.minute, 2) + padded(parts.second, 2) + "Z"
    }
}
