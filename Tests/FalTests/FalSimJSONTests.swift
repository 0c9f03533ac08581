import FalSim
import Testing

@Suite struct FalSimJSONTests {
    static let fixture = #"""
    {"z": 1, "a": {"nested": [1, 2.5, -0.0, 1e16, 1.5e-7, 100.0, 0.1, 1E+2, 12345678901234567890123, -7, -0, 5e-324,
     1.7976931348623157e308, 0.0001, 0.00001, 123456789012345.6, 1e400],
     "ünïcödé": "café ☕ 𝄞 \u0000 \u007f \t\n\r\b\f \\ \" / \ud83d\ude00", "empty": {}, "list": []},
     "seed": 17454220438242315174, "B": true, "é": null, "Z": false, "\u00e9x": "x", "😀": "astral key",
     "dup": 1, "dup": 2, "ｆ": "fullwidth"}
    """#

    @Test func serialisesByteForByteAsPython() async throws {
        try await FalSimTest.requirePython()
        let python = try await FalSimTest.python(
            ["-c", "import json,sys; sys.stdout.write(json.dumps(json.loads(sys.stdin.read()), sort_keys=True))"],
            input: Array(Self.fixture.utf8)
        )
        #expect(python.status == 0, "\(python.error)")
        let ours = try FalSimJSON.parse(Self.fixture).pythonSerialized()
        #expect(String(decoding: ours, as: UTF8.self) == String(decoding: python.output, as: UTF8.self))
        #expect(ours == python.output)
    }

    @Test func webhookShapedBodyMatchesPython() async throws {
        try await FalSimTest.requirePython()
        let body = FalSimJSON.object([
            "error": .null, "gateway_request_id": .string("abc"), "request_id": .string("abc"), "status": .string("OK"),
            "payload": .object(["seed": .number("17454220438242315174"), "prompt": .string("naïve 🎬"), "ratio": .double(0.5625)]),
        ])
        let text = body.pythonString
        let python = try await FalSimTest.python(
            ["-c", "import json,sys; sys.stdout.write(json.dumps(json.loads(sys.stdin.read()), sort_keys=True))"],
            input: Array(text.utf8)
        )
        #expect(python.status == 0, "\(python.error)")
        #expect(text == String(decoding: python.output, as: UTF8.self))
        #expect(text.contains(#""seed": 17454220438242315174"#))
        #expect(text.contains(#"naïve"#) == false)
    }

    @Test func bigIntegersSurvive() throws {
        let json = try FalSimJSON.parse(#"{"seed": 17454220438242315174}"#)
        #expect(json["seed"] == .number("17454220438242315174"))
        #expect(json.pythonString == #"{"seed": 17454220438242315174}"#)
    }

    @Test func rejectsInvalidJSON() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01", "nul", "\"\u{01}\"", "1 2"] {
            #expect(throws: FalSimJSONError.self, "\(bad)") { try FalSimJSON.parse(bad) }
        }
    }
}
