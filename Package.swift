// swift-tools-version:6.0
import PackageDescription

// docknfv: dual-homed VNF containers and container network policy on Linux.
// C libraries are reached through system-library targets (Debian -dev packages via
// pkg-config) and one small C shim for what Swift cannot import.
/// Executables that run as short processes (a command, a CNI call): linked at a fixed address in
/// release builds, so the loader has no relocations of their own to apply at every start.
let shortProcess: [LinkerSetting] = [.unsafeFlags(["-Xlinker", "-no-pie"], .when(configuration: .release))]

let package = Package(
    name: "docknfv",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "docknfv-init", targets: ["docknfv-init"]),
        .executable(name: "docknfv-dhcp-hook", targets: ["docknfv-dhcp-hook"]),
        .executable(name: "docknfvctl", targets: ["docknfvctl"]),
        .executable(name: "docknfv", targets: ["docknfv"]),
        .executable(name: "docknfv-agent", targets: ["docknfv-agent"]),
        .executable(name: "docknfv-bench", targets: ["docknfv-bench"]),
        .library(name: "Routing", targets: ["Routing"]),
        .library(name: "DualHome", targets: ["DualHome"]),
        .library(name: "NetNS", targets: ["NetNS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // The policy agent's TLS client and metrics listener only (the CNI plugin links neither).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // C libraries.
        .systemLibrary(name: "CLibNL", pkgConfig: "libnl-route-3.0",
                       providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]),
        .systemLibrary(name: "CLibIP4TC", pkgConfig: "libip4tc", providers: [.apt(["libiptc-dev"])]),
        .systemLibrary(name: "CLibIP6TC", pkgConfig: "libip6tc", providers: [.apt(["libiptc-dev"])]),
        .systemLibrary(name: "CLibMNL", pkgConfig: "libmnl", providers: [.apt(["libmnl-dev"])]),
        .systemLibrary(name: "CLibNFTNL", pkgConfig: "libnftnl", providers: [.apt(["libnftnl-dev", "libmnl-dev"])]),
        .target(name: "CDockNFVShim"),
        .target(name: "CNetfilterShim", dependencies: ["CLibIP4TC", "CLibIP6TC", "CLibMNL"]),
        .target(name: "CIPSetShim", dependencies: ["CLibMNL"]),

        // Library modules, one job each.
        .target(name: "NetTypes"),
        .target(name: "NetNS", dependencies: ["CDockNFVShim"]),
        .target(name: "ShortProcess", dependencies: ["CDockNFVShim"]),
        .target(name: "Routing", dependencies: ["NetTypes", "CLibNL", "CDockNFVShim"]),
        .target(name: "DualHome", dependencies: ["NetTypes", "Routing"]),
        .target(name: "StateFiles"),
        .target(name: "Rules", dependencies: ["NetTypes"]),
        .target(name: "RuleEngine", dependencies: ["Rules"]),
        .target(name: "NetlinkRelease", dependencies: ["CDockNFVShim"]),
        .target(name: "NFTables", dependencies: ["RuleEngine", "CLibNFTNL", "NetlinkRelease"]),
        .target(name: "IPSet", dependencies: ["RuleEngine", "CIPSetShim"]),
        .target(name: "IPTables", dependencies: ["RuleEngine", "IPSet", "CNetfilterShim"]),
        .target(name: "RuleState", dependencies: ["RuleEngine", "IPTables", "NFTables", "IPSet", "StateFiles", "ShortProcess"]),
        .target(name: "Conntrack", dependencies: ["NetTypes", "CLibMNL", "NetlinkRelease"]),
        .target(name: "PortMap", dependencies: ["RuleEngine"]),
        .target(name: "ASG", dependencies: ["RuleEngine"]),
        .target(name: "CNI", dependencies: ["NetTypes", "StateFiles"]),
        .target(name: "Policy", dependencies: ["RuleEngine", "StateFiles"]),
        .target(name: "PolicyClient", dependencies: [
            "Policy",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        .target(name: "CNIPlugin", dependencies: ["CNI", "NetTypes", "Conntrack", "NetlinkRelease", "Policy", "PortMap", "ASG", "RuleEngine", "RuleState", "DualHome", "Routing", "NetNS", "StateFiles", "ShortProcess"]),
        .target(name: "Agent", dependencies: [
            "Policy", "PolicyClient", "CNIPlugin", "RuleEngine", "RuleState", "NFTables", "StateFiles", "NetTypes",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .target(name: "DHCPRoutes", dependencies: ["NetTypes"]),
        .target(name: "DHCPHook", dependencies: ["DHCPRoutes", "Routing", "StateFiles"]),
        .target(name: "InitSupervisor", dependencies: ["NetTypes", "DualHome", "Routing", "RuleState", "StateFiles", "CDockNFVShim"]),

        // Thin executables.
        .executableTarget(name: "docknfv-init", dependencies: [
            "InitSupervisor", "DualHome", "Routing",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "docknfv-dhcp-hook", dependencies: [
            "DHCPHook", "Routing",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // No argument parser and no Foundation: every invocation is a short process (start-up counts).
        .executableTarget(name: "docknfvctl", dependencies: ["RuleState", "RuleEngine", "NetNS", "StateFiles", "NetlinkRelease", "ShortProcess"], linkerSettings: shortProcess),
        // The CNI plugin: started for every container by the runtime; lean like docknfvctl.
        .executableTarget(name: "docknfv", dependencies: ["CNIPlugin", "ShortProcess"], linkerSettings: shortProcess),
        .executableTarget(name: "docknfv-agent", dependencies: ["Agent", "StateFiles"]),
        .executableTarget(name: "docknfv-bench", dependencies: ["Policy", "DualHome", "Routing", "NetNS", "IPTables", "IPSet", "RuleEngine", "NFTables", "RuleState", "StateFiles"]),

        // Tests.
        .target(name: "TestSupport", dependencies: ["NetNS", "Routing"], path: "Tests/TestSupport"),
        .testTarget(name: "NetNSTests", dependencies: ["NetNS", "TestSupport"]),
        .testTarget(name: "RoutingTests", dependencies: ["Routing", "NetNS", "TestSupport"]),
        .testTarget(name: "DualHomeTests", dependencies: ["DualHome", "Routing", "NetNS", "TestSupport"]),
        .testTarget(name: "InitSupervisorTests", dependencies: [
            "InitSupervisor", "DualHome", "TestSupport", "docknfv-init",
        ]),
        .testTarget(name: "DHCPRoutesTests", dependencies: ["DHCPRoutes", "DHCPHook", "StateFiles", "Routing", "TestSupport"]),
        .testTarget(name: "DHCPHookEndToEndTests", dependencies: ["TestSupport", "docknfv-dhcp-hook", "docknfv-init"],
                    exclude: ["dhcp-openvpn.sh"]),
        .testTarget(name: "RulesTests", dependencies: ["Rules", "TestSupport"]),
        .testTarget(name: "RuleStateTests", dependencies: ["RuleState", "RuleEngine", "StateFiles", "TestSupport"]),
        .testTarget(name: "NFTablesTests", dependencies: ["NFTables", "RuleEngine", "NetNS", "TestSupport"]),
        .testTarget(name: "IPTablesTests", dependencies: ["IPTables", "RuleEngine", "IPSet", "NetNS", "TestSupport"]),
        .testTarget(name: "DocknfvctlTests", dependencies: ["TestSupport", "docknfvctl", "docknfv-init"]),
        .testTarget(name: "CNITests", dependencies: ["CNI", "Conntrack", "NetlinkRelease", "NetNS", "NetTypes", "CNIPlugin", "PortMap", "ASG", "RuleEngine", "StateFiles", "TestSupport", "docknfv"]),
        // podman, libcni (a Go driver built by the tests) and the reference plugins around the real docknfv binary.
        .testTarget(name: "CNIEndToEndTests", dependencies: ["TestSupport", "docknfv"], exclude: ["cnidriver.go"]),
        .testTarget(name: "AgentTests", dependencies: ["Policy", "RuleEngine", "NFTables", "NetNS", "TestSupport", "docknfv", "docknfv-agent"],
                    exclude: ["agent-e2e.sh", "policy-server.py"]),
        // scripts/build-images (buildah) and the built images under podman; drives images-podman.sh.
        .testTarget(name: "ImagesEndToEndTests", dependencies: ["TestSupport"], exclude: ["images-podman.sh"]),
        // docs/config-reference.md against the key lists the decoders use and what the images' scripts read.
        .testTarget(name: "ConfigReferenceTests", dependencies: ["CNIPlugin", "Agent", "InitSupervisor", "DHCPHook", "DHCPRoutes", "TestSupport", "docknfv-dhcp-hook"]),
        .testTarget(name: "RuleSemanticsTests", dependencies: ["RuleEngine", "IPTables", "NFTables", "NetNS", "TestSupport", "docknfvctl"]),
    ]
)
