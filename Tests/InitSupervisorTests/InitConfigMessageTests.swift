import Foundation
import Testing
import InitSupervisor

/// Issue 8 item 15: a wrong JSON type is named in JSON's terms, never as a Swift type
/// (`expected Dictionary<String, Any>`), and a wrong top level names the file, not an empty field.
@Suite("docknfv-init configuration: type errors in JSON terms")
struct InitConfigMessageTests {
    @Test(arguments: [
        (#"[]"#, "config FILE: expected a JSON object at the top level"),
        (#""route""#, "config FILE: expected a JSON object at the top level"),
        (#"{"left": []}"#, "left = (FILE): expected a JSON object"),
        (#"{"left": {"gateway": {"a": 1}}}"#, "left.gateway (DOCKNFV_LEFT_GW) = (FILE): expected a JSON list"),
        (#"{"mode": true}"#, "mode (DOCKNFV_MODE) = (FILE): expected a string"),
    ])
    func wrongTypesAreNamedInJSONTerms(json: String, message: String) throws {
        let path = NSTemporaryDirectory() + "dnfvt-initm-\(UUID().uuidString).json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect { _ = try InitConfig.load(path: path, environment: [:]) } throws: { error in
            let text = String(describing: error).replacingOccurrences(of: path, with: "FILE")
            return text == message && !text.contains("Dictionary") && !text.contains("Array")
        }
    }
}
