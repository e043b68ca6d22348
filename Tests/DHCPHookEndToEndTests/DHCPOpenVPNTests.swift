import Foundation
import Testing
import TestSupport

/// Drives dhcp-openvpn.sh: a real dnsmasq sends option 121, a real dhclient runs the real
/// dhclient-script with docknfv's shim, a real OpenVPN server includes the push file, and real
/// OpenVPN clients in another namespace receive and install the routes — then a renewal changes
/// them and a release withdraws them.
@Suite("DHCP hook with dnsmasq, dhclient and OpenVPN", .enabled(if: TestEnv.privileged))
struct DHCPOpenVPNTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func optionOneTwentyOneReachesVPNClients() throws {
        let script = Self.root.appendingPathComponent("Tests/DHCPHookEndToEndTests/dhcp-openvpn.sh").path
        let result = try runCommand(["timeout", "240", "bash", script, TestEnv.binDir.path,
                                     Self.root.appendingPathComponent("scripts/dhclient-exit-hook").path,
                                     Self.root.appendingPathComponent("scripts/dhcp/dhclient.conf").path])
        let passes = result.stdout.split(separator: "\n").filter { $0.hasPrefix("PASS: ") }
        #expect(result.status == 0, "\(result)")
        #expect(passes.count == 7, "\(result.stdout)")
        #expect(result.stdout.contains("all DHCP/OpenVPN end-to-end checks passed"))
    }
}
