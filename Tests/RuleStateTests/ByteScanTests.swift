import Testing
@testable import StateFiles
import TestSupport

/// The word-at-a-time scans against byte-by-byte loops, on random bytes biased towards the bytes
/// they look for, at every alignment and length. Seeded (`DOCKNFV_FUZZ_SEED`, printed).
@Suite("Byte scans eight bytes at a time")
struct ByteScanTests {
    static func plainRunReference(_ bytes: [UInt8], from start: Int) -> (end: Int, ascii: Bool) {
        var at = start
        while at < bytes.count, bytes[at] != UInt8(ascii: "\""), bytes[at] != UInt8(ascii: "\\"), bytes[at] >= 0x20 { at += 1 }
        return (at, bytes[start..<at].allSatisfy { $0 < 0x80 })
    }

    @Test("plainRun and hasControlCharacter agree with byte loops")
    func againstByteLoops() {
        var rng = SeededGenerator(seed: SeededGenerator.seed(for: "byte scans", fallback: 8))
        let special: [UInt8] = [0x22, 0x5c, 0x00, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xc3, 0xff, 0x5b, 0x5d]
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...40, using: &rng)
            let bytes: [UInt8] = (0..<length).map { _ in
                Int.random(in: 0..<6, using: &rng) == 0 ? special.randomElement(using: &rng)! : UInt8.random(in: 0x23...0x7e, using: &rng)
            }
            let start = length == 0 ? 0 : Int.random(in: 0...length, using: &rng)
            let fast = bytes.withUnsafeBufferPointer { ByteScan.plainRun($0, from: start) }
            let slow = Self.plainRunReference(bytes, from: start)
            #expect(fast.end == slow.end && fast.ascii == slow.ascii, "\(bytes) from \(start)")
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(ByteScan.hasControlCharacter(text) == text.utf8.contains { $0 < 0x20 || $0 == 0x7f }, "\(bytes)")
        }
    }

    @Test("Every byte value is told apart in every place of a word")
    func everyByteEverywhere() {
        for value in 0...255 {
            for place in 0..<8 {
                var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 8)
                bytes[place] = UInt8(value)
                let run = bytes.withUnsafeBufferPointer { ByteScan.plainRun($0, from: 0) }
                let stops = value == 0x22 || value == 0x5c || value < 0x20
                #expect(run.end == (stops ? place : 8), "byte \(value) at \(place)")
                if !stops { #expect(run.ascii == (value < 0x80), "byte \(value) at \(place)") }
                #expect(ByteScan.hasByte(below: 0x20, bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) == (value < 0x20))
            }
        }
    }
}
