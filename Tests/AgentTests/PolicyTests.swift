import Policy
import RuleEngine
import Testing

/// The Policy Server's document and the enforcement plan, without a kernel.
@Suite("policies: decoding and enforcement plan")
struct PolicyTests {
    static let one = #"{"total_policies":1,"policies":[{"source":{"id":"ga","tag":"0001"},"destination":{"id":"gb","tag":"00ff","protocol":"tcp","ports":{"start":8080,"end":8090}}}]}"#

    @Test func decodesTheDocumentedSchema() throws {
        let policies = try PolicyDocument.decode(Array(Self.one.utf8))
        #expect(policies == [Policy(sourceID: "ga", sourceTag: 1, destinationID: "gb", destinationTag: 0xff, proto: .tcp, ports: 8080...8090)])
        #expect(try PolicyDocument.decode(PolicyDocument.encode(policies)) == policies, "round trip")
    }

    @Test func readsAnyLayoutAndSkipsUnknownMembers() throws {
        let text = """
         { "extra": {"nested": [1, {"x": null}]}, "policies" : [ { "destination" : { "ports" : {"end": 90, "start": 80, "note": "x"},
           "protocol": "UDP", "tag": "2", "id": "g\\u00e9b\\"" }, "source": {"tag": "ffffffff", "id": "ga", "more": true} } ],
           "total_policies": 1 }
        """
        let decoded = try PolicyDocument.decode(Array(text.utf8))
        #expect(decoded == [Policy(sourceID: "ga", sourceTag: 0xffff_ffff, destinationID: "géb\"", destinationTag: 2, proto: .udp, ports: 80...90)], "\(decoded)")
    }

    @Test(arguments: [
        ("{", "response"),
        (#"{"policies":{}}"#, "policies"),
        (#"{"total_policies":2,"policies":[]}"#, "total_policies"),
        (#"{"policies":[{"source":{"id":"a","tag":"1"}}]}"#, "policies[0]"),
        (#"{"policies":[{"source":{"id":"a","tag":"zz"},"destination":{"id":"b","tag":"2","protocol":"tcp","ports":{"start":1,"end":2}}}]}"#, "policies[0].source.tag"),
        (#"{"policies":[{"source":{"id":"a","tag":"1"},"destination":{"id":"b","tag":"2","protocol":"sctp","ports":{"start":1,"end":2}}}]}"#, "policies[0].destination.protocol"),
        (#"{"policies":[{"source":{"id":"a","tag":"1"},"destination":{"id":"b","tag":"2","protocol":"tcp","ports":{"start":0,"end":2}}}]}"#, "policies[0].destination.ports"),
        (#"{"policies":[{"source":{"id":"a","tag":"1"},"destination":{"id":"b","tag":"2","protocol":"tcp","ports":{"start":9,"end":2}}}]}"#, "policies[0].destination.ports"),
        (#"{"policies":[{"source":{"id":"","tag":"1"},"destination":{"id":"b","tag":"2","protocol":"tcp","ports":{"start":1,"end":2}}}]}"#, "policies[0].source.id"),
        (#"{"policies":[1]}"#, "policies[0]"),
        (#"{"policies":[{"source":1,"destination":{}}]}"#, "policies[0].source.id"),
        (#"{"policies":[],"policies":[]}"#, "response"),
        (#"{"policies":[]} x"#, "response"),
        (#"{"policies":[{"source":{"id":"a","tag":"1"},"destination":{"id":"b","tag":"2","protocol":"tcp","ports":{"start":1,"end":2}}},]}"#, "response"),
        ("[]", "policies"),
        (#"{"policies":[{"source":{"id":"a","id":"b","tag":"1"},"destination":{"id":"b","tag":"2","protocol":"tcp","ports":{"start":1,"end":2}}}]}"#, "response"),
        (#"{"policies":[{"source":{"id":"a","tag":"1"},"destination":{"id":"b","tag":"2","protocol":"tcp","ports":{"start":1,"end":2,"end":3}}}]}"#, "response"),
        ("{}", "policies"),
    ])
    func badDocumentsAreRejectedWhole(text: String, field: String) {
        #expect { try PolicyDocument.decode(Array(text.utf8)) } throws: { ($0 as? PolicyDecodeError)?.field == field }
    }

    @Test func planMarksSourcesAndGuardsDestinations() throws {
        let policies = try PolicyDocument.decode(Array(Self.one.utf8))
        let containers = [LocalContainer(address: IPAddress("10.244.0.2")!, groupID: "ga"), LocalContainer(address: IPAddress("10.244.0.3")!, groupID: "gb"),
                          LocalContainer(address: IPAddress("192.168.9.9")!, groupID: "gb")]
        let ruleset = try EnforcementPlanner.plan(policies, containers: containers, overlay: IPPrefix("10.244.0.0/16")!)
        let mangle = ruleset.table(TableKey(.v4, .mangle))?.entries["PREROUTING"]?.map(\.text)
        #expect(mangle == ["-s 10.244.0.2/32 -d 10.244.0.0/16 -j MARK --set-xmark 0x1/0xffffffff"])
        let filter = try #require(ruleset.table(TableKey(.v4, .filter)))
        #expect(filter.entries["FORWARD"]?.map(\.text) == ["-s 10.244.0.0/16 -d 10.244.0.2/32 -j C2C-0af40002", "-s 10.244.0.0/16 -d 10.244.0.3/32 -j C2C-0af40003"],
                "containers outside the overlay are not the agent's business")
        #expect(filter.entries["C2C-0af40003"]?.map(\.text) == [
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-p tcp -m mark --mark 0x1 -m tcp --dport 8080:8090 -j ACCEPT",
            "-j REJECT --reject-with icmp-port-unreachable",
        ])
        #expect(filter.entries["C2C-0af40002"]?.map(\.text).last == "-j REJECT --reject-with icmp-port-unreachable")
        let logging = try EnforcementPlanner.plan(policies, containers: containers, overlay: IPPrefix("10.244.0.0/16")!, deny: .log)
        #expect(logging.table(TableKey(.v4, .filter))?.entries["C2C-0af40002"]?.map(\.text).last == "-j ACCEPT")
        #expect(try EnforcementPlanner.plan(policies.reversed(), containers: containers.reversed(), overlay: IPPrefix("10.244.0.0/16")!) == ruleset,
                "order does not matter")
    }

    @Test func withSetsEachPortRangeIsOneRuleAndEachPolicyOneElement() throws {
        func policy(_ tag: UInt32, _ proto: Policy.Proto, _ ports: ClosedRange<UInt16>, to group: String = "gb") -> Policy {
            Policy(sourceID: "g\(tag)", sourceTag: tag, destinationID: group, destinationTag: 0x99, proto: proto, ports: ports)
        }
        let policies = [policy(0x3, .tcp, 8080...8080), policy(0x1, .tcp, 8080...8080), policy(0x2, .udp, 53...54), policy(0x1, .tcp, 8080...8080),
                        policy(0x7, .tcp, 9000...9000, to: "elsewhere")]
        let containers = [LocalContainer(address: IPAddress("10.244.0.3")!, groupID: "gb"), LocalContainer(address: IPAddress("10.244.0.4")!, groupID: "gc")]
        let ruleset = try EnforcementPlanner.plan(policies, containers: containers, overlay: IPPrefix("10.244.0.0/16")!, style: .sets)
        let filter = try #require(ruleset.table(TableKey(.v4, .filter)))
        #expect(filter.entries["C2C-0af40003"]?.map(\.text) == [
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-p tcp -m tcp --dport 8080 -m set --match-set c2c-0af40003-t8080 dst,dst -j ACCEPT",
            "-p udp -m udp --dport 53:54 -m set --match-set c2c-0af40003-u53-54 dst,dst -j ACCEPT",
            "-j REJECT --reject-with icmp-port-unreachable",
        ])
        #expect(filter.entries["C2C-0af40004"]?.map(\.text) == ["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-j REJECT --reject-with icmp-port-unreachable"],
                "a destination without policies accepts only replies")
        #expect(ruleset.sets.keys.sorted() == ["c2c-0af40003-t8080", "c2c-0af40003-u53-54"])
        #expect(ruleset.sets["c2c-0af40003-t8080"]?.entries.map(\.description) == ["10.244.0.3,0x00000001", "10.244.0.3,0x00000003"], "a repeated policy is one element")
        #expect(ruleset.sets["c2c-0af40003-t8080"]?.type == .hashIPMark)
        // Parsed back, the texts are the same rules: what the state and the iptables tools read.
        for (chain, entries) in filter.entries { for entry in entries { #expect(try RuleParser(family: .v4).parse(entry.text) == [try entry.rule()], "\(chain): \(entry.text)") } }
        #expect(try EnforcementPlanner.plan(policies.reversed(), containers: containers.reversed(), overlay: IPPrefix("10.244.0.0/16")!, style: .sets) == ruleset,
                "order does not matter")
        #expect(EnforcementStyle.for(.nftables) == .sets && EnforcementStyle.for(.iptables) == .rules)
    }
}
