import Foundation

/// SplitMix64: a small seeded generator, the same sequence on every machine, for property and
/// fuzz tests. A failure is reproduced by running again with the seed the test printed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// The seed for a property test: `$DOCKNFV_FUZZ_SEED` when set, else `fallback`. Printed, so
    /// that a failing run names the value to reproduce it with.
    public static func seed(for test: String, fallback: UInt64) -> UInt64 {
        let seed = ProcessInfo.processInfo.environment["DOCKNFV_FUZZ_SEED"].flatMap { UInt64($0) } ?? fallback
        print("\(test): DOCKNFV_FUZZ_SEED=\(seed)")
        return seed
    }
}
