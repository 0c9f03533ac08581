import Foundation

/// Media files fal-sim serves under `/_sim/media/`, so output URLs point at real files.
enum FalSimMedia {
    /// A valid 1-second 64x64 MP4 (H.264 baseline + silent AAC, faststart), 2345 bytes,
    /// generated once with ffmpeg:
    /// `ffmpeg -f lavfi -i color=c=0x3050a0:s=64x64:r=8:d=1 -f lavfi -i anullsrc=r=8000:cl=mono -t 1
    ///  -c:v libx264 -profile:v baseline -pix_fmt yuv420p -crf 40 -c:a aac -b:a 8k -movflags +faststart`
    static let mp4: [UInt8] = Array(Data(base64Encoded: mp4Base64, options: .ignoreUnknownCharacters)!)

    private static let mp4Base64 = """
AAAAIGZ0eXBpc29tAAACAGlzb21pc28yYXZjMW1wNDEAAAXfbW9vdgAAAGxtdmhkAAAAAAAAAAAAAAAAAAAD6AAAA+gAAQAAAQAA
AAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwAA
Aox0cmFrAAAAXHRraGQAAAADAAAAAAAAAAAAAAABAAAAAAAAA+gAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAA
AAAAAAAAAAAAAABAAAAAAEAAAABAAAAAAAAkZWR0cwAAABxlbHN0AAAAAAAAAAEAAAPoAAAAAAABAAAAAAIEbWRpYQAAACBtZGhk
AAAAAAAAAAAAAAAAAABAAAAAQABVxAAAAAAALWhkbHIAAAAAAAAAAHZpZGUAAAAAAAAAAAAAAABWaWRlb0hhbmRsZXIAAAABr21p
bmYAAAAUdm1oZAAAAAEAAAAAAAAAAAAAACRkaW5mAAAAHGRyZWYAAAAAAAAAAQAAAAx1cmwgAAAAAQAAAW9zdGJsAAAAu3N0c2QA
AAAAAAAAAQAAAKthdmMxAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAEAAQABIAAAASAAAAAAAAAABFUxhdmM1OS4zNy4xMDAgbGli
eDI2NAAAAAAAAAAAAAAAGP//AAAAMWF2Y0MBQsAe/+EAGGdCwB6mERCbARAAAAMAEAAAAwEA8WLhGAEABmjIQgOSyAAAABBwYXNw
AAAAAQAAAAEAAAAUYnRydAAAAAAAABcoAAAXKAAAABhzdHRzAAAAAAAAAAEAAAAIAAAIAAAAABRzdHNzAAAAAAAAAAEAAAABAAAA
HHN0c2MAAAAAAAAAAQAAAAEAAAABAAAAAQAAADRzdHN6AAAAAAAAAAAAAAAIAAACmQAAAAoAAAALAAAACwAAAAsAAAALAAAACwAA
AAsAAAAwc3RjbwAAAAAAAAAIAAAGJAAACMEAAAjPAAAI3gAACO0AAAj8AAAJCwAACRoAAAJ9dHJhawAAAFx0a2hkAAAAAwAAAAAA
AAAAAAAAAgAAAAAAAAPoAAAAAAAAAAAAAAABAQAAAAABAAAAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAA
AAAAJGVkdHMAAAAcZWxzdAAAAAAAAAABAAAD6AAABAAAAQAAAAAB9W1kaWEAAAAgbWRoZAAAAAAAAAAAAAAAAAAAH0AAACNAVcQA
AAAAAC1oZGxyAAAAAAAAAABzb3VuAAAAAAAAAAAAAAAAU291bmRIYW5kbGVyAAAAAaBtaW5mAAAAEHNtaGQAAAAAAAAAAAAAACRk
aW5mAAAAHGRyZWYAAAAAAAAAAQAAAAx1cmwgAAAAAQAAAWRzdGJsAAAAfnN0c2QAAAAAAAAAAQAAAG5tcDRhAAAAAAAAAAEAAAAA
AAAAAAACABAAAAAAH0AAAAAAADZlc2RzAAAAAAOAgIAlAAIABICAgBdAFQAAAAAAH0AAAAF3BYCAgAUViFblAAaAgIABAgAAABRi
dHJ0AAAAAAAAH0AAAAF3AAAAIHN0dHMAAAAAAAAAAgAAAAgAAAQAAAAAAQAAA0AAAAAcc3RzYwAAAAAAAAABAAAAAQAAAAEAAAAB
AAAAOHN0c3oAAAAAAAAAAAAAAAkAAAAVAAAABAAAAAQAAAAEAAAABAAAAAQAAAAEAAAABAAAAAQAAAA0c3RjbwAAAAAAAAAJAAAG
DwAACL0AAAjLAAAI2gAACOkAAAj4AAAJBwAACRYAAAklAAAAGnNncGQBAAAAcm9sbAAAAAIAAAAB//8AAAAcc2JncAAAAAByb2xs
AAAAAQAAAAkAAAABAAAAYnVkdGEAAABabWV0YQAAAAAAAAAhaGRscgAAAAAAAAAAbWRpcmFwcGwAAAAAAAAAAAAAAAAtaWxzdAAA
ACWpdG9vAAAAHWRhdGEAAAABAAAAAExhdmY1OS4yNy4xMDAAAAAIZnJlZQAAAyJtZGF03gIATGF2YzU5LjM3LjEwMAACMEAOAAAC
cgYF//9u3EXpvebZSLeWLNgg2SPu73gyNjQgLSBjb3JlIDE2NCByMzA5NSBiYWVlNDAwIC0gSC4yNjQvTVBFRy00IEFWQyBjb2Rl
YyAtIENvcHlsZWZ0IDIwMDMtMjAyMiAtIGh0dHA6Ly93d3cudmlkZW9sYW4ub3JnL3gyNjQuaHRtbCAtIG9wdGlvbnM6IGNhYmFj
PTAgcmVmPTE2IGRlYmxvY2s9MTowOjAgYW5hbHlzZT0weDE6MHgxMzEgbWU9dW1oIHN1Ym1lPTEwIHBzeT0xIHBzeV9yZD0xLjAw
OjAuMDAgbWl4ZWRfcmVmPTEgbWVfcmFuZ2U9MjQgY2hyb21hX21lPTEgdHJlbGxpcz0yIDh4OGRjdD0wIGNxbT0wIGRlYWR6b25l
PTIxLDExIGZhc3RfcHNraXA9MSBjaHJvbWFfcXBfb2Zmc2V0PS0yIHRocmVhZHM9MiBsb29rYWhlYWRfdGhyZWFkcz0xIHNsaWNl
ZF90aHJlYWRzPTAgbnI9MCBkZWNpbWF0ZT0xIGludGVybGFjZWQ9MCBibHVyYXlfY29tcGF0PTAgY29uc3RyYWluZWRfaW50cmE9
MCBiZnJhbWVzPTAgd2VpZ2h0cD0wIGtleWludD0yNTAga2V5aW50X21pbj04IHNjZW5lY3V0PTQwIGludHJhX3JlZnJlc2g9MCBy
Y19sb29rYWhlYWQ9NjAgcmM9Y3JmIG1idHJlZT0xIGNyZj00MC4wIHFjb21wPTAuNjAgcXBtaW49MCBxcG1heD02OSBxcHN0ZXA9
NCBpcF9yYXRpbz0xLjQwIGFxPTE6MS4wMACAAAAAH2WIggIeIkFAAEEuOAAID0cAA/ct99dddddddddddeABGCAHAAAABkGaHAQ8
IwEYIAcAAAAHQZoqAQ8IwAEYIAcAAAAHQZo7AQ8IwAEYIAcAAAAHQZpJAEPCMAEYIAcAAAAHQZpZQP8IwAEYIAcAAAAHQZppgP8I
wAEYIAcAAAAHQZp5wO8IwAEYIAc=
"""

    /// `bytes=a-b` or `bytes=a-` against a file of `size` bytes: nil when the header is not one
    /// such range (served whole), `.some(nil)` when it starts past the end (416), else the
    /// inclusive bounds, `b` clamped to the end.
    static func range(_ header: String, size: Int) -> (Int, Int)?? {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let parts = header.dropFirst(6).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let first = Int(parts[0]), first >= 0 else { return nil }
        let last = parts[1].isEmpty ? size - 1 : Int(parts[1])
        guard let last, last >= first else { return nil }
        guard first < size else { return .some(nil) }
        return .some((first, min(last, size - 1)))
    }

    static let wavSampleRate = 8000
    /// Longest WAV served, so a silly duration cannot make a huge response.
    static let maximumWAVSeconds = 600.0

    /// Bytes of a WAV of `seconds` seconds (8 kHz mono 16-bit).
    static func wavSize(seconds: Double) -> Int {
        44 + sampleCount(seconds: seconds) * 2
    }

    private static func sampleCount(seconds: Double) -> Int {
        guard seconds.isFinite else { return 0 }
        return Int((min(max(seconds, 0), maximumWAVSeconds) * Double(wavSampleRate)).rounded())
    }

    /// A WAV of `seconds` seconds: a quiet 440 Hz tone, 8 kHz mono 16-bit PCM.
    static func wav(seconds: Double) -> [UInt8] {
        let samples = sampleCount(seconds: seconds)
        let dataSize = samples * 2
        var out: [UInt8] = []
        out.reserveCapacity(44 + dataSize)
        func append32(_ value: Int) { withUnsafeBytes(of: UInt32(value).littleEndian) { out.append(contentsOf: $0) } }
        func append16(_ value: Int) { withUnsafeBytes(of: UInt16(value).littleEndian) { out.append(contentsOf: $0) } }
        out.append(contentsOf: "RIFF".utf8)
        append32(36 + dataSize)
        out.append(contentsOf: "WAVEfmt ".utf8)
        append32(16)
        append16(1)  // PCM
        append16(1)  // mono
        append32(wavSampleRate)
        append32(wavSampleRate * 2)
        append16(2)
        append16(16)
        out.append(contentsOf: "data".utf8)
        append32(dataSize)
        for index in 0..<samples {
            let value = Int16(2000 * sin(2 * Double.pi * 440 * Double(index) / Double(wavSampleRate)))
            withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
        }
        return out
    }
}
