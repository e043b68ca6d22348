import Foundation
import Testing
import DualHome
import InitSupervisor
import NetTypes

@Suite("docknfv-init configuration")
struct InitConfigTests {
    func withFile<T>(_ text: String, _ body: (String) throws -> T) throws -> T {
        let path = NSTemporaryDirectory() + "dnfvt-init-\(UUID().uuidString).json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try body(path)
    }

    @Test func defaultsWithoutFileOrEnvironment() throws {
        let config = try InitConfig.load(path: nil, environment: [:])
        #expect(config == InitConfig())
        #expect(config.dualHome.left.interface == "eth1")
        #expect(config.waitTimeoutSeconds == 30)
    }

    @Test func explicitMissingFileIsAnError() {
        #expect(throws: InitConfigError.unreadable(path: "/nonexistent/init.json", reason: "no such file")) {
            try InitConfig.load(path: "/nonexistent/init.json", environment: [:])
        }
    }

    @Test func fullFile() throws {
        let config = try withFile("""
            {"mode": "route", "rulePriority": 500, "waitTimeoutSeconds": 2.5, "stateDir": "/tmp/x",
             "left": {"interface": "left0", "gateway": ["10.1.0.1", "fd01::1"], "table": 201},
             "right": {"interface": "right0", "gateway": "10.2.0.1", "table": 202}}
            """) { try InitConfig.load(path: $0, environment: [:]) }
        #expect(config.dualHome.left == SideConfig(interface: "left0", gateways: [IPAddress("10.1.0.1")!, IPAddress("fd01::1")!], table: 201))
        #expect(config.dualHome.right == SideConfig(interface: "right0", gateways: [IPAddress("10.2.0.1")!], table: 202))
        #expect(config.dualHome.rulePriority == 500)
        #expect(config.waitTimeoutSeconds == 2.5)
        #expect(config.stateDir == "/tmp/x")
    }

    @Test func environmentOverridesTheFile() throws {
        let config = try withFile(#"{"mode": "route", "left": {"table": 201}}"#) {
            try InitConfig.load(path: $0, environment: [
                "DOCKNFV_MODE": "vpn", "DOCKNFV_LEFT_IF": "l0", "DOCKNFV_RIGHT_IF": "r0",
                "DOCKNFV_LEFT_GW": "10.1.0.1, fd01::1", "DOCKNFV_RIGHT_GW": "10.2.0.1",
                "DOCKNFV_LEFT_TABLE": "301", "DOCKNFV_RIGHT_TABLE": "302", "DOCKNFV_RULE_PRIORITY": "77",
                "DOCKNFV_WAIT_TIMEOUT": "0.5", "UNRELATED": "x",
            ])
        }
        #expect(config.dualHome.mode == .vpn)
        #expect(config.dualHome.left == SideConfig(interface: "l0", gateways: [IPAddress("10.1.0.1")!, IPAddress("fd01::1")!], table: 301))
        #expect(config.dualHome.right == SideConfig(interface: "r0", gateways: [IPAddress("10.2.0.1")!], table: 302))
        #expect(config.dualHome.rulePriority == 77)
        #expect(config.waitTimeoutSeconds == 0.5)
    }

    @Test func emptyGatewayVariableClearsTheFileGateway() throws {
        let config = try withFile(#"{"left": {"gateway": "10.1.0.1"}}"#) {
            try InitConfig.load(path: $0, environment: ["DOCKNFV_LEFT_GW": ""])
        }
        #expect(config.dualHome.left.gateways.isEmpty)
    }

    /// Every bad environment value names its variable and value.
    @Test(arguments: [
        ("DOCKNFV_LEFT_TABLE", "abc", "DOCKNFV_LEFT_TABLE"), ("DOCKNFV_LEFT_TABLE", "-1", "DOCKNFV_LEFT_TABLE"),
        ("DOCKNFV_LEFT_TABLE", "4294967296", "DOCKNFV_LEFT_TABLE"), ("DOCKNFV_RIGHT_TABLE", "253", "right.table"),
        ("DOCKNFV_RIGHT_TABLE", "254", "right.table"), ("DOCKNFV_RIGHT_TABLE", "255", "right.table"),
        ("DOCKNFV_RIGHT_TABLE", "0", "right.table"), ("DOCKNFV_RIGHT_TABLE", "101", "right.table"),
        ("DOCKNFV_MODE", "bridge", "DOCKNFV_MODE"), ("DOCKNFV_LEFT_GW", "10.0.0.300", "DOCKNFV_LEFT_GW"),
        ("DOCKNFV_LEFT_GW", "10.0.0.1,10.0.0.2", "DOCKNFV_LEFT_GW"), ("DOCKNFV_RIGHT_GW", "10.0.0.0/24", "DOCKNFV_RIGHT_GW"),
        ("DOCKNFV_RIGHT_IF", "an-interface-name", "DOCKNFV_RIGHT_IF"), ("DOCKNFV_LEFT_IF", "eth0", "right.interface"),
        ("DOCKNFV_WAIT_TIMEOUT", "-3", "DOCKNFV_WAIT_TIMEOUT"), ("DOCKNFV_WAIT_TIMEOUT", "soon", "DOCKNFV_WAIT_TIMEOUT"),
        ("DOCKNFV_RULE_PRIORITY", "0", "rulePriority"), ("DOCKNFV_RULE_PRIORITY", "32766", "rulePriority"),
    ])
    func badEnvironmentValue(variable: String, value: String, field: String) {
        do {
            let config = try InitConfig.load(path: nil, environment: [variable: value])
            Issue.record("accepted \(variable)=\(value): \(config)")
        } catch {
            let text = error.description
            #expect(text.hasPrefix(field), "\(text)")
            let variableNamed = text.contains(variable)
            let valueNamed = text.contains(value) || text.contains(value.trimmingCharacters(in: .whitespaces))
            #expect(variableNamed || field.contains("."), "\(text)")
            #expect(valueNamed || field == "right.interface", "\(text)")
        }
    }

    @Test(arguments: [
        (#"{"left": {"gatway": "10.1.0.1"}}"#, "left.gatway"),
        (#"{"lefty": {}}"#, "lefty"),
        (#"{"left": {"table": "abc"}}"#, "left.table"),
        (#"{"left": {"table": -5}}"#, "left.table"),
        (#"{"left": {"table": 1.5}}"#, "left.table"),
        (#"{"left": {"table": 253}}"#, "left.table"),
        (#"{"right": {"gateway": "300.1.1.1"}}"#, "right.gateway"),
        (#"{"right": {"gateway": 5}}"#, "right.gateway"),
        (#"{"mode": "switch"}"#, "mode"),
        (#"{"waitTimeoutSeconds": "x"}"#, "waitTimeoutSeconds"),
        (#"{"rulePriority": 0}"#, "rulePriority"),
    ])
    func badFileValue(json: String, field: String) throws {
        try withFile(json) { path in
            do {
                _ = try InitConfig.load(path: path, environment: [:])
                Issue.record("accepted \(json)")
            } catch {
                #expect("\(error)".hasPrefix(field), "\(error)")
            }
        }
    }

    @Test(arguments: ["{", "", "[1,2]", "{\"mode\" \"route\"}", "nul"])
    func unparsableJSON(text: String) throws {
        try withFile(text) { path in
            #expect(throws: InitConfigError.self) { try InitConfig.load(path: path, environment: [:]) }
            do { _ = try InitConfig.load(path: path, environment: [:]) } catch {
                #expect("\(error)".contains(path), "\(error)")
            }
        }
    }
}
