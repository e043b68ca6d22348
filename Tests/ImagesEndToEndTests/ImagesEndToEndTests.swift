import Foundation
import Testing
import TestSupport

/// The VNF images for real: `scripts/build-images` builds images/dockwall and images/dockvpn with
/// buildah (cached layers make a rebuild with no change fast), and images-podman.sh loads the
/// archives into a throwaway podman store and runs them between a left and a right network.
@Suite("VNF images under podman", .enabled(if: TestEnv.privileged), .serialized)
struct ImagesEndToEndTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let buildah = "/usr/bin/buildah"

    /// Builds both archives once per test process (into .build/images of the package).
    static let archives: Result<String, TestFailure> = {
        let out = root.appendingPathComponent(".build/images").path
        do {
            let result = try runCommand(["timeout", "3600", root.appendingPathComponent("scripts/build-images").path, out])
            guard result.succeeded else { return .failure(TestFailure("scripts/build-images: \(result)")) }
            return .success(out)
        } catch {
            return .failure(TestFailure("scripts/build-images: \(error)"))
        }
    }()

    func run(_ part: String, passes: Int) throws {
        let dir = try Self.archives.get()
        let script = Self.root.appendingPathComponent("Tests/ImagesEndToEndTests/images-podman.sh").path
        let result = try runCommand(["timeout", "600", "bash", script, dir, part])
        let passed = result.stdout.split(separator: "\n").filter { $0.hasPrefix("PASS: ") }
        #expect(result.status == 0, "\(result)")
        #expect(passed.count == passes, "\(result.stdout)")
    }

    /// dockwall between left and right: traffic crosses it, the mounted rule file blocks what it
    /// says, `docknfvctl rule add` changes it at runtime, both survive `podman restart`; without
    /// `--sysctl` it exits naming the flags.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: buildah),
                   "buildah is not installed: scripts/build-images and ./scripts/test install it (IMAGE_PACKAGES)"))
    func dockwall() throws { try run("dockwall", passes: 6) }

    /// dockvpn: a lease with option 121 from dnsmasq on the left, an OpenVPN client from the right
    /// receives exactly those routes and reaches a host on the left through the tunnel.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: buildah),
                   "buildah is not installed: scripts/build-images and ./scripts/test install it (IMAGE_PACKAGES)"))
    func dockvpn() throws { try run("dockvpn", passes: 3) }
}
