import Foundation
import Testing
import InitSupervisor

/// Issue 8: duplicate keys and nulls in init.json (item 15), and DOCKNFV_STATE_DIR (item 13).
@Suite("docknfv-init configuration: hostile input")
struct InitConfigHardeningTests {
    func load(json: String, environment: [String: String] = [:]) throws -> InitConfig {
        let path = NSTemporaryDirectory() + "dnfvt-inith-\(UUID().uuidString).json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do { return try InitConfig.load(path: path, environment: environment) } catch {
            throw TestMessage(text: String(describing: error).replacingOccurrences(of: path, with: "FILE"))
        }
    }

    struct TestMessage: Error, CustomStringConvertible { var text: String; var description: String { text } }

    @Test(arguments: [
        (#"{"mode": "route", "mode": "vpn"}"#, "mode (DOCKNFV_MODE) = (FILE): given more than once"),
        (#"{"mode": "vpn", "mo\u0064e": "route"}"#, "mode (DOCKNFV_MODE) = (FILE): given more than once"),
        (#"{"left": {"table": 201, "table": 202}}"#, "left.table (DOCKNFV_LEFT_TABLE) = (FILE): given more than once"),
        (#"{"left": {"interface": "a"}, "left": {"interface": "b"}}"#, "left = (FILE): given more than once"),
        (#"{"mode": null}"#, "mode (DOCKNFV_MODE) = \"null (FILE)\": null is not a value; leave the field out for the default"),
        (#"{"right": {"gateway": null}}"#, "right.gateway (DOCKNFV_RIGHT_GW) = \"null (FILE)\": null is not a value; leave the field out for the default"),
        (#"{"stateDir":null}"#, "stateDir (DOCKNFV_STATE_DIR) = \"null (FILE)\": null is not a value; leave the field out for the default"),
    ])
    func duplicateKeysAndNullsAreRefused(json: String, message: String) {
        #expect { try load(json: json) } throws: { String(describing: $0) == message }
    }

    @Test func similarButDistinctInputIsAccepted() throws {
        let config = try load(json: #"{"mode": "vpn", "left": {"table": 201}, "right": {"table": 201, "gateway": ["10.2.0.1"]}}"#)
        #expect(config.dualHome.left.table == 201 && config.dualHome.right.table == 201)
        // A string value "null" and keys repeated in different objects are fine.
        _ = try load(json: #"{"left": {"interface": "null"}, "right": {"interface": "eth0"}}"#)
        // Malformed JSON is still reported by the decoder, not by the duplicate check.
        #expect { try load(json: #"{"mode": "route", "mode""#) } throws: { String(describing: $0).contains("not valid JSON") }
    }

    @Test(arguments: [
        ("", "DOCKNFV_STATE_DIR = \"\": the state directory path is empty"),
        ("state", "DOCKNFV_STATE_DIR = \"state\": state directory \"state\" is not an absolute path"),
        ("./var/lib/docknfv", "DOCKNFV_STATE_DIR = \"./var/lib/docknfv\": state directory \"./var/lib/docknfv\" is not an absolute path"),
        ("/etc/hostname", "DOCKNFV_STATE_DIR = \"/etc/hostname\": state directory /etc/hostname is not a directory"),
        ("/etc/hostname/x", "DOCKNFV_STATE_DIR = \"/etc/hostname/x\": state directory /etc/hostname/x: /etc/hostname is not a directory"),
    ])
    func badStateDirectoriesAreRefused(value: String, message: String) {
        #expect { try InitConfig.load(path: nil, environment: ["DOCKNFV_STATE_DIR": value]) } throws: {
            String(describing: $0) == message
        }
    }

    @Test func stateDirectoryFromTheFileIsCheckedToo() {
        #expect { try load(json: #"{"stateDir": "relative"}"#) } throws: {
            String(describing: $0) == "stateDir (DOCKNFV_STATE_DIR) = \"relative\": state directory \"relative\" is not an absolute path"
        }
    }

    @Test(.enabled(if: geteuid() == 0)) func worldWritableStateDirectoryIsRefused() throws {
        let dir = "/tmp/dnfvt-inith-\(UUID().uuidString.prefix(8))"
        #expect(mkdir(dir, 0o700) == 0 && chmod(dir, 0o777) == 0)
        defer { rmdir(dir) }
        #expect { try InitConfig.load(path: nil, environment: ["DOCKNFV_STATE_DIR": dir]) } throws: {
            String(describing: $0).hasPrefix("DOCKNFV_STATE_DIR = \"\(dir)\": state directory \(dir) is writable by group or others (mode 777)")
        }
        #expect(chmod(dir, 0o555) == 0) // read-only is fine for a reader
        #expect(try InitConfig.load(path: nil, environment: ["DOCKNFV_STATE_DIR": dir]).stateDir == dir)
        // Missing is fine too: nothing was persisted.
        #expect(try InitConfig.load(path: nil, environment: ["DOCKNFV_STATE_DIR": dir + "/missing"]).stateDir == dir + "/missing")
    }
}
