import Foundation
import Testing
import TestSupport

/// Drives agent-e2e.sh: a TLS Policy Server (TLS 1.2, the reference suite only, client
/// certificates required), two containers made by libcni (ptp + docknfv with the metadata
/// capability), and the real docknfv-agent enforcing, with real TCP between the containers.
@Suite("policy agent end to end", .enabled(if: TestEnv.privileged))
struct AgentEndToEndTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func policiesAreEnforcedBetweenContainers() throws {
        let script = Self.root.appendingPathComponent("Tests/AgentTests/agent-e2e.sh").path
        let result = try runCommand(["timeout", "180", "bash", script, TestEnv.binDir.path, Self.root.path])
        let passes = result.stdout.split(separator: "\n").filter { $0.hasPrefix("PASS: ") }
        #expect(result.status == 0, "\(result)")
        #expect(passes.count == 10, "\(result.stdout)")
        #expect(result.stdout.contains("all agent end-to-end checks passed"))
    }
}
