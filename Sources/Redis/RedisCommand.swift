import Foundation

/// Something that can be one argument of a Redis command, as bytes.
public protocol RedisArgumentConvertible: Sendable {
    var redisArgument: [UInt8] { get }
}

extension String: RedisArgumentConvertible {
    public var redisArgument: [UInt8] { Array(utf8) }
}
extension Substring: RedisArgumentConvertible {
    public var redisArgument: [UInt8] { Array(utf8) }
}
extension Array: RedisArgumentConvertible where Element == UInt8 {
    public var redisArgument: [UInt8] { self }
}
extension Int: RedisArgumentConvertible {
    public var redisArgument: [UInt8] { Array(String(self).utf8) }
}
extension Int64: RedisArgumentConvertible {
    public var redisArgument: [UInt8] { Array(String(self).utf8) }
}
extension Double: RedisArgumentConvertible {
    public var redisArgument: [UInt8] { Array(String(self).utf8) }
}
extension Data: RedisArgumentConvertible {
    public var redisArgument: [UInt8] { Array(self) }
}

/// One command as binary-safe arguments (sent with `redisAppendCommandArgv`, never a format string).
public struct RedisCommand: Sendable, Hashable {
    public var arguments: [[UInt8]]

    public init(_ name: String, _ arguments: any RedisArgumentConvertible...) {
        self.arguments = [Array(name.utf8)] + arguments.map(\.redisArgument)
    }

    public init(_ name: String, arguments: [any RedisArgumentConvertible]) {
        self.arguments = [Array(name.utf8)] + arguments.map(\.redisArgument)
    }

    public init(rawArguments: [[UInt8]]) {
        self.arguments = rawArguments
    }

    /// The command name, for logs and metrics (never the arguments: they may hold secrets).
    public var name: String { arguments.first.map { String(decoding: $0, as: UTF8.self) } ?? "" }
}
