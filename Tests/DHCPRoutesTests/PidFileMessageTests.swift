import Foundation
import Testing
import DHCPHook

/// Issue 8 items 14 and 15: a pid file that names no daemon says what it holds, not "no pid".
@Suite("OpenVPN pid file messages")
struct PidFileMessageTests {
    @Test(arguments: [("1\n", "\"1\" is not the process id of a daemon (a number above 1)"), ("\n", "no pid in the file"),
                      ("openvpn\n", "\"openvpn\" is not the process id of a daemon (a number above 1)"),
                      ("-5", "\"-5\" is not the process id of a daemon (a number above 1)")])
    func pidFilesThatNameNoDaemon(content: String, reason: String) throws {
        let path = NSTemporaryDirectory() + "dnfvt-pid-\(UUID().uuidString)"
        try content.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: NotifyError.failed(target: "pid file \(path)", reason: reason)) { try OpenVPNNotifier.reload(.pidFile(path: path)) }
    }
}
