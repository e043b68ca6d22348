import Policy
import RuleEngine
import StateFiles
import Testing
import TestSupport

/// The incremental decoder against the whole-document decoder: for random answers and random
/// edits of them (a policy added, removed or changed, spaces, a broken byte, total_policies), both
/// give the same policies or both refuse.
@Suite("policies: incremental decoding of successive answers")
struct PolicyDecoderTests {
    static func document(_ policies: [Policy], total: Int?, spaced: Bool) -> [UInt8] {
        let space = spaced ? " " : ""
        let items = policies.map { p in
            #"{"source":{"id":"\#(p.sourceID)","tag":"\#(String(p.sourceTag, radix: 16))"},\#(space)"destination":{"id":"\#(p.destinationID)","tag":"\#(String(p.destinationTag, radix: 16))","protocol":"\#(p.proto.rawValue)","ports":{"start":\#(p.ports.lowerBound),"end":\#(p.ports.upperBound)}}}"#
        }
        let totalText = total.map { #""total_policies":\#($0),\#(space)"# } ?? ""
        return Array(#"{\#(totalText)"policies":[\#(space)\#(items.joined(separator: "," + space))\#(space)]}"#.utf8)
    }

    static func random(_ rng: inout SeededGenerator) -> Policy {
        let low = UInt16.random(in: 1...9000, using: &rng)
        // Some ids hold brackets: a "]" inside a string must never be taken for the array's end.
        let odd = ["]}", "}]}", "[{", "a]", "]"]
        let source = Int.random(in: 0..<60, using: &rng)
        return Policy(sourceID: source < 50 ? "s\(source)" : odd[source % odd.count], sourceTag: UInt32.random(in: 1...0xffff, using: &rng),
                      destinationID: "d\(Int.random(in: 0..<50, using: &rng))", destinationTag: UInt32.random(in: 1...0xffff, using: &rng),
                      proto: Bool.random(using: &rng) ? .tcp : .udp, ports: low...low + UInt16.random(in: 0...10, using: &rng))
    }

    func outcome(_ body: () throws -> [Policy]) -> String {
        do { return "\(try body())" } catch { return "error \(error)" }
    }

    @Test func incrementalDecodingAgreesWithWholeDecoding() {
        var rng = SeededGenerator(seed: SeededGenerator.seed(for: "incrementalDecodingAgreesWithWholeDecoding", fallback: 20261123))
        let decoder = PolicyDecoder()
        var policies = (0..<40).map { _ in Self.random(&rng) }
        var total: Int? = policies.count
        var smallChanges = 0, smallDecodes = 0
        for round in 0..<3000 {
            var spaced = false
            var broken: Int?
            let edit = Int.random(in: 0..<8, using: &rng)
            switch edit {
            case 0: policies.insert(Self.random(&rng), at: Int.random(in: 0...policies.count, using: &rng))
            case 1 where !policies.isEmpty: policies.remove(at: Int.random(in: 0..<policies.count, using: &rng))
            case 2 where !policies.isEmpty: policies[Int.random(in: 0..<policies.count, using: &rng)] = Self.random(&rng)
            case 3: spaced = true
            case 4: broken = Int.random(in: 0..<1000, using: &rng)
            case 5: total = Bool.random(using: &rng) ? nil : policies.count + Int.random(in: -1...1, using: &rng)
            default: break
            }
            if total != nil && edit != 5 { total = policies.count }
            var bytes = Self.document(policies, total: total, spaced: spaced)
            if let broken { bytes[broken % bytes.count] = [UInt8(ascii: "}"), UInt8(ascii: "x"), UInt8(ascii: ","), UInt8(ascii: "\"")][broken % 4] }
            let whole = outcome { try PolicyDocument.decode(bytes) }
            let incremental = outcome { try decoder.decode(bytes) }
            #expect(incremental == whole, "round \(round), edit \(edit)")
            if (0...2).contains(edit), !whole.hasPrefix("error"), !spaced {
                smallChanges += 1
                if decoder.lastDecodedCount <= 2 { smallDecodes += 1 }
            }
        }
        // Most one-policy changes decode one policy (a change at the edges may decode the whole).
        #expect(smallDecodes * 10 >= smallChanges * 7, "\(smallDecodes) of \(smallChanges) one-policy changes decoded at most 2 policies")
    }

    @Test func oneChangedPolicyAmongThousandsIsTheOnlyOneDecoded() throws {
        var rng = SeededGenerator(seed: 7)
        var policies = (0..<5000).map { _ in Self.random(&rng) }
        let decoder = PolicyDecoder()
        _ = try decoder.decode(Self.document(policies, total: policies.count, spaced: false))
        #expect(decoder.lastDecodedCount == 5000)
        policies[2500] = Self.random(&rng)
        #expect(try decoder.decode(Self.document(policies, total: policies.count, spaced: false)) == policies)
        #expect(decoder.lastDecodedCount == 1)
        policies.insert(Self.random(&rng), at: 10)
        #expect(try decoder.decode(Self.document(policies, total: policies.count, spaced: false)) == policies)
        // The new one, and the next when their bytes happen to begin alike.
        #expect(decoder.lastDecodedCount <= 2, "total_policies changed too: the head is read again")
        #expect(try decoder.decode(Self.document(policies, total: policies.count, spaced: false)) == policies)
        #expect(decoder.lastDecodedCount == 0, "the same answer decodes nothing")
    }
}

/// The incremental planner against planning from scratch, over random edits of the policies and
/// of the node's containers, in both styles: the same ruleset every time, and only the changed
/// destinations built again.
@Suite("policies: incremental planning")
struct IncrementalPlannerTests {
    @Test(arguments: [EnforcementStyle.sets, .rules])
    func incrementalPlansAreThePlansFromScratch(style: EnforcementStyle) throws {
        var rng = SeededGenerator(seed: SeededGenerator.seed(for: "incrementalPlansAreThePlansFromScratch", fallback: 42))
        let overlay = IPPrefix("10.244.0.0/16")!
        func container(_ i: Int) -> LocalContainer { LocalContainer(address: IPAddress("10.244.0.\(i + 2)")!, groupID: "d\(i % 12)") }
        var containers = (0..<10).map(container)
        var policies = (0..<200).map { _ in PolicyDecoderTests.random(&rng) }
        let planner = IncrementalPlanner()
        var oneEditRebuilds: [Int] = []
        for round in 0..<300 {
            let edit = Int.random(in: 0..<5, using: &rng)
            switch edit {
            case 0: policies.append(PolicyDecoderTests.random(&rng))
            case 1 where !policies.isEmpty: policies.remove(at: Int.random(in: 0..<policies.count, using: &rng))
            case 2 where !policies.isEmpty: policies[Int.random(in: 0..<policies.count, using: &rng)] = PolicyDecoderTests.random(&rng)
            case 3: containers = (0..<Int.random(in: 5...14, using: &rng)).map(container)
            default: break
            }
            let deny: DenyAction = round % 50 == 49 ? .drop : .reject
            let incremental = try planner.plan(policies, containers: containers, overlay: overlay, deny: deny, style: style)
            let scratch = try EnforcementPlanner.plan(policies, containers: containers, overlay: overlay, deny: deny, style: style)
            #expect(incremental == scratch, "round \(round), edit \(edit)")
            if (0...2).contains(edit), round % 50 != 49, round % 50 != 0 { oneEditRebuilds.append(planner.lastRebuilt) }
        }
        // A changed policy may leave one destination group for another; a group has at most two
        // containers here.
        #expect(oneEditRebuilds.allSatisfy { $0 <= 4 }, "one policy changed rebuilds only its destinations: \(oneEditRebuilds)")
        #expect(oneEditRebuilds.contains(0) && oneEditRebuilds.contains(1), "\(oneEditRebuilds)")
        #expect(try planner.plan(policies, containers: containers, overlay: overlay, style: style) == EnforcementPlanner.plan(policies, containers: containers, overlay: overlay, style: style))
        _ = try planner.plan(policies, containers: containers, overlay: overlay, style: style)
        #expect(planner.lastRebuilt == 0, "the same policies rebuild nothing")
    }
}

@Suite("policies: incremental decoding from and to an empty answer")
struct PolicyDecoderEdgeTests {
    /// A "]" that sat in a string of the last answer's tail is not the array's end: the answer
    /// below has trailing data, which the whole decoder refuses; so must the incremental one.
    @Test func aBracketInTheLastAnswersTailIsNotTheArraysEnd() throws {
        let p = #"{"source":{"id":"a","tag":"1"},"destination":{"id":"b","tag":"2","protocol":"tcp","ports":{"start":1,"end":1}}}"#
        let q = #"{"source":{"id":"c","tag":"3"},"destination":{"id":"d","tag":"4","protocol":"tcp","ports":{"start":2,"end":2}},"x":"]}"}"#
        let decoder = PolicyDecoder()
        #expect(try decoder.decode(Array(#"{"policies":[\#(p),\#(q)]}"#.utf8)).count == 2)
        let next = Array(#"{"policies":[\#(p)]}"}]}"#.utf8)
        #expect(throws: PolicyDecodeError.self) { try PolicyDocument.decode(next) }
        #expect(throws: PolicyDecodeError.self) { try decoder.decode(next) }
    }

    @Test func fromEmptyToOneAndBack() throws {
        let decoder = PolicyDecoder()
        let one = Policy(sourceID: "ga", sourceTag: 1, destinationID: "gb", destinationTag: 2, proto: .tcp, ports: 8080...8080)
        for total in [true, false] {
            for (policies, spaced) in [([Policy](), false), ([one], false), ([], false), ([one], true), ([one, one], false), ([], true)] {
                let bytes = PolicyDecoderTests.document(policies, total: total ? policies.count : nil, spaced: spaced)
                #expect(try decoder.decode(bytes) == policies, "\(String(decoding: bytes, as: UTF8.self))")
            }
        }
    }
}
