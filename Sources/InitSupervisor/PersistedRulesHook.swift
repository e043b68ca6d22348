import Foundation
import RuleState

/// Re-applies the rules `docknfvctl` persisted in the state directory, so they survive a container
/// restart (the kernel's tables start empty in a new network namespace; the state file does not).
public struct PersistedRulesHook: InitHook {
    public let name = "re-applying persisted rules"

    public init() {}

    public func apply(config: InitConfig, log: (String) -> Void) throws {
        let store = StateStore(directory: config.stateDir)
        guard FileManager.default.fileExists(atPath: store.path) else {
            log("no persisted rules (\(store.path) does not exist)")
            return
        }
        let report = try RuleManager(store: store).apply()
        log("persisted rules from \(store.path): committed \(report.committed.map(\.description).joined(separator: ", ").ifEmpty("nothing"))"
            + (report.unchanged.isEmpty ? "" : "; already in place: \(report.unchanged.map(\.description).joined(separator: ", "))"))
    }
}

extension String {
    func ifEmpty(_ replacement: String) -> String { isEmpty ? replacement : self }
}
