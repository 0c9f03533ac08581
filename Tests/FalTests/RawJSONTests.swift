import Fal
import Testing

@Suite struct RawJSONTests {
    @Test func membersKeepExactValueBytes() throws {
        let body = json(#"{"seed": 17454220438242315174, "video": {"url": "https://x/a.mp4", "n": [1, {"a": "}"}]}, "s": "q\"uo}te\\", "z": -1.5e+10, "t": true, "f": false, "nil": null}"#)
        let members = try RawJSON.members(of: body)
        #expect(members.map(\.key) == ["seed", "video", "s", "z", "t", "f", "nil"])
        #expect(String(decoding: members[0].value, as: UTF8.self) == "17454220438242315174")
        #expect(String(decoding: members[1].value, as: UTF8.self) == #"{"url": "https://x/a.mp4", "n": [1, {"a": "}"}]}"#)
        #expect(String(decoding: members[2].value, as: UTF8.self) == #""q\"uo}te\\""#)
        #expect(RawJSON.string(members[2].value) == "q\"uo}te\\")
        #expect(String(decoding: members[3].value, as: UTF8.self) == "-1.5e+10")
        #expect(RawJSON.isNull(members[6].value))
    }

    @Test func dottedPathExtractsStringsWithoutTouchingNumbers() {
        let body = json(#"{"seed":17454220438242315174,"video":{"file_size":99999999999999999999999,"url":"https:\/\/cdn\/v.mp4?a=1\u0026b=\u00e9"},"audio_file":{"url":"w.wav"}}"#)
        #expect(RawJSON.string(atPath: "video.url", in: body) == "https://cdn/v.mp4?a=1&b=é")
        #expect(RawJSON.string(atPath: "audio_file.url", in: body) == "w.wav")
        #expect(RawJSON.string(atPath: "video.file_size", in: body) == nil)
        #expect(RawJSON.string(atPath: "video.missing", in: body) == nil)
        #expect(RawJSON.string(atPath: "seed.url", in: body) == nil)
        #expect(RawJSON.value(atPath: "seed", in: body).map { String(decoding: $0, as: UTF8.self) } == "17454220438242315174")
    }

    @Test func surrogatePairsAndEscapes() {
        let raw = json(#""\ud83c\udfac \t\n\/\b\f\r""#)
        #expect(RawJSON.string(raw[...]) == "🎬 \t\n/\u{8}\u{c}\r")
        #expect(RawJSON.string(json(#""lone \ud800 x""#)[...]) == "lone \u{FFFD} x")
        #expect(RawJSON.string(json("\"é\"")[...]) == "é")
    }

    @Test(arguments: [
        "", "[]", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":\"x}",
        "{\"a\":tru}", "{\"a\":1} x", "{\"a\":\"\\x\"}", "{\"a\":\"\u{1}\"}", "{a:1}", "{\"a\":-}", "{\"a\":[1 2]}",
    ])
    func rejectsMalformedObjects(_ text: String) {
        #expect(throws: RawJSONError.self) { try RawJSON.members(of: json(text)) }
        #expect(!RawJSON.isObject(json(text)))
    }

    /// Strings are skipped a run of plain bytes at a time: runs end at escapes, quotes and control
    /// bytes wherever the slice starts in its array.
    @Test func stringsInASliceOfALargerArray() throws {
        let prefix = Array(#"xx"junk""#.utf8), object = json(#"{"a":"plain \"quoted\" \\ \u00e9 end","b":"","c":["\\","x"]}"#)
        let whole = prefix + object + Array(#""tail"#.utf8)
        let slice = whole[prefix.count..<(prefix.count + object.count)]
        let members = try RawJSON.members(of: slice)
        #expect(members.map(\.key) == ["a", "b", "c"])
        #expect(RawJSON.string(members[0].value) == #"plain "quoted" \ é end"#)
        #expect(String(decoding: members[2].value, as: UTF8.self) == #"["\\","x"]"#)
        #expect(throws: RawJSONError.self) { try RawJSON.members(of: whole[prefix.count..<(prefix.count + 12)]) }  // cut inside a string
    }

    @Test func acceptsWhitespaceAndEmptyContainers() throws {
        #expect(try RawJSON.members(of: json(" \n{ } \t")).isEmpty)
        let members = try RawJSON.members(of: json(#"{ "a" : [ ] , "b" : { } , "c":0,"d":-0.0E-0}"#))
        #expect(members.map { String(decoding: $0.value, as: UTF8.self) } == ["[ ]", "{ }", "0", "-0.0E-0"])
    }

    @Test func deepNestingIsRejectedNotCrashing() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(!RawJSON.isObject(json("{\"a\":" + deep + "}")))
    }
}
