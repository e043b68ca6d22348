import CNI
import CNIPlugin
import Foundation
import StateFiles
import Testing

/// The example configurations in examples/cni are documentation users copy: each must be valid.
@Suite("CNI example configurations")
struct ExampleConfigTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("examples/cni")

    static var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).filter { $0.hasSuffix(".conflist") }.sorted()
    }

    @Test func thereAreExamples() { #expect(Self.files.count >= 5) }

    @Test(arguments: files)
    func docknfvEntryParses(file: String) throws {
        let bytes = try [UInt8](Data(contentsOf: Self.directory.appendingPathComponent(file)))
        let list = try JSON.parse(bytes)
        let version = try #require(list["cniVersion"]?.string)
        let name = try #require(list["name"]?.string)
        let entries = try #require(list["plugins"]?.array).filter { $0["type"]?.string == "docknfv" }
        #expect(entries.count == 1)
        // What a runtime hands the plugin: the entry with the list's name and version.
        var members = try #require(entries.first?.members)
        members.insert(("cniVersion", .string(version)), at: 0)
        members.insert(("name", .string(name)), at: 0)
        _ = try PluginConfig(.object(members), command: .add)
    }
}
