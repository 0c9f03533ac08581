@testable import Clapper
import Foundation
import Testing

@Suite("JSONWriter strings")
struct JSONWriterTests {
    /// Every escape path, in runs and alone, at the start, middle and end; 2,000 random strings
    /// from an alphabet of the hard cases. Each must read back (JSONSerialization) as itself and
    /// hold no raw control byte, U+2028 or U+2029.
    @Test func everyStringReadsBackAsItselfWithNothingRawThatBreaksLines() throws {
        let alphabet: [String] = ["a", "Z", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{08}", "\u{0C}", "\u{0}", "\u{1F}", "\u{7F}",
                                  "\u{2028}", "\u{2029}", "\u{2027}", "\u{202A}", "é", "€", "🐈", "\u{E2}"]
        var generator = SystemRandomNumberGenerator()
        var samples = alphabet + ["", "plain ascii only", "\u{2028}\u{2028}", "end\\"]
        for _ in 0..<2_000 {
            let length = Int.random(in: 0...12, using: &generator)
            samples.append((0..<length).map { _ in alphabet.randomElement(using: &generator) ?? "a" }.joined())
        }
        for sample in samples {
            let bytes = JSONWriter.quoted(sample)
            let decoded = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) as? String
            #expect(decoded == sample, "\(Array(sample.unicodeScalars))")
            #expect(!bytes.contains { $0 < 0x20 || $0 == 0x7F })
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(!text.contains("\u{2028}") && !text.contains("\u{2029}"))
        }
        #expect(String(decoding: JSONWriter.quoted("a\u{1}\u{2028}\"b"), as: UTF8.self) == #""a\u0001\u2028\"b""#)
    }
}
