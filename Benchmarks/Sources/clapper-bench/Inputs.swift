import ArgumentParser
import Foundation
import NIOCore

/// One prepared request: the key that names it (a job id) and its raw HTTP/1.1 bytes.
struct Record: Sendable {
    let key: String
    let bytes: ByteBuffer

    /// Reads a requests file: records `<key> <length>\n<length bytes>`.
    static func load(_ path: String) throws -> [Record] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read the requests file \(path)")
        }
        var records: [Record] = []
        var index = data.startIndex
        while index < data.endIndex {
            guard let newline = data[index...].firstIndex(of: 10) else { throw malformed(path, at: index) }
            let header = String(decoding: data[index..<newline], as: UTF8.self).split(separator: " ")
            guard header.count == 2, let length = Int(header[1]), length >= 0,
                length <= data.endIndex - newline - 1
            else { throw malformed(path, at: index) }
            let body = data[(newline + 1)..<(newline + 1 + length)]
            records.append(Record(key: String(header[0]), bytes: ByteBuffer(bytes: body)))
            index = newline + 1 + length
        }
        return records
    }

    private static func malformed(_ path: String, at offset: Int) -> ValidationError {
        ValidationError("\(path): not a `<key> <length>` record at byte \(offset)")
    }
}

/// One SSE stream to open: the key that names it and its path.
struct StreamPath: Sendable {
    let key: String
    let path: String

    /// Reads a paths file: lines `<key> <path>`.
    static func load(_ file: String) throws -> [StreamPath] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ValidationError("cannot read the paths file \(file)")
        }
        return try text.split(separator: "\n").map { line in
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { throw ValidationError("\(file): not a `<key> <path>` line: \(line)") }
            return StreamPath(key: String(parts[0]), path: String(parts[1]))
        }
    }
}
