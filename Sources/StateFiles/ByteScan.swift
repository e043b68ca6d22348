/// Word-at-a-time scans over bytes: eight bytes per step where a byte-by-byte loop would take
/// eight. State files and CNI configs are hundreds of kilobytes of mostly plain ASCII text.
public enum ByteScan {
    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let highs: UInt64 = 0x8080_8080_8080_8080

    /// Whether some byte of `word` is below `limit` (at most 128): exact, no false positives.
    @inline(__always) static func hasByte(below limit: UInt8, _ word: UInt64) -> Bool {
        (word &- ones &* UInt64(limit)) & ~word & highs != 0
    }

    /// Whether some byte of `word` equals `byte`.
    @inline(__always) static func hasByte(_ byte: UInt8, _ word: UInt64) -> Bool {
        let x = word ^ (ones &* UInt64(byte))
        return (x &- ones) & ~x & highs != 0
    }

    /// The first index from `start` whose byte is a quote, a backslash or a control character
    /// (below 0x20) — where a JSON string's plain run ends — or the end; and whether every byte
    /// before it is ASCII.
    static func plainRun(_ buffer: UnsafeBufferPointer<UInt8>, from start: Int) -> (end: Int, ascii: Bool) {
        var at = start, high: UInt64 = 0
        if let base = buffer.baseAddress {
            while at + 8 <= buffer.count {
                let word = UnsafeRawPointer(base + at).loadUnaligned(as: UInt64.self)
                if hasByte(below: 0x20, word) || hasByte(UInt8(ascii: "\""), word) || hasByte(UInt8(ascii: "\\"), word) { break }
                high |= word
                at += 8
            }
        }
        while at < buffer.count {
            let byte = buffer[at]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            high |= UInt64(byte)
            at += 1
        }
        return (at, high & highs == 0)
    }

    /// Whether `text` holds an ASCII control character (below 0x20, or DEL 0x7f).
    public static func hasControlCharacter(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { buffer in
            var at = 0
            if let base = buffer.baseAddress {
                while at + 8 <= buffer.count {
                    let word = UnsafeRawPointer(base + at).loadUnaligned(as: UInt64.self)
                    if hasByte(below: 0x20, word) || hasByte(0x7f, word) { break }
                    at += 8
                }
            }
            return buffer[at...].contains { $0 < 0x20 || $0 == 0x7f }
        }
    }
}
