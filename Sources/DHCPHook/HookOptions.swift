/// Settings of docknfv-dhcp-hook (command-line options and `DOCKNFV_*` variables).
public struct HookOptions: Sendable, Equatable {
    public var pushFile: String
    /// How to tell OpenVPN; nil = only write the file.
    public var control: OpenVPNControl?
    /// Push a DHCP default route as `redirect-gateway def1`.
    public var redirectGateway: Bool
    /// Install the routes in the container's main table through the DHCP interface.
    public var installRoutes: Bool

    public static let defaultPushFile = "/etc/openvpn/docknfv-routes.conf"

    /// The documented spellings of a boolean variable (any letter case).
    public static let trueSpellings = ["1", "true", "yes", "on"]
    public static let falseSpellings = ["0", "false", "no", "off"]

    public init(pushFile: String = defaultPushFile, control: OpenVPNControl? = nil, redirectGateway: Bool = false,
                installRoutes: Bool = true) {
        self.pushFile = pushFile
        self.control = control
        self.redirectGateway = redirectGateway
        self.installRoutes = installRoutes
    }

    /// Command-line values over `DOCKNFV_*` variables over defaults. Every variable that is set is
    /// validated, even when an option overrides it: a value that is set but empty is an error
    /// (unset it for the default), and a boolean takes only the documented spellings.
    public static func resolve(pushFile: String? = nil, management: String? = nil, pidFile: String? = nil,
                               redirectGateway: Bool = false, noRoutes: Bool = false,
                               environment env: [String: String]) throws(HookError) -> HookOptions {
        func value(_ option: (name: String, value: String?), _ variable: String) throws(HookError) -> String? {
            let fromEnv = env[variable]
            if fromEnv?.isEmpty == true { throw .invalidSetting(name: variable, value: "", reason: "is set but empty; unset it for the default") }
            if option.value?.isEmpty == true { throw .invalidSetting(name: option.name, value: "", reason: "is empty") }
            return option.value ?? fromEnv
        }
        func boolean(_ variable: String) throws(HookError) -> Bool? {
            guard let text = try value(("", nil), variable) else { return nil }
            if trueSpellings.contains(text.lowercased()) { return true }
            if falseSpellings.contains(text.lowercased()) { return false }
            throw .invalidSetting(name: variable, value: text,
                                  reason: "expected one of \((trueSpellings + falseSpellings).joined(separator: ", "))")
        }

        var options = HookOptions()
        options.pushFile = try value(("--push-file", pushFile), "DOCKNFV_PUSH_FILE") ?? defaultPushFile
        let managementText = try value(("--management", management), "DOCKNFV_OPENVPN_MANAGEMENT")
        let pidPath = try value(("--pid-file", pidFile), "DOCKNFV_OPENVPN_PIDFILE")
        if let managementText {
            guard let control = OpenVPNControl.management(managementText) else {
                throw .invalidSetting(name: management != nil ? "--management" : "DOCKNFV_OPENVPN_MANAGEMENT", value: managementText,
                                      reason: "expected unix:PATH or HOST:PORT")
            }
            options.control = control
        } else if let pidPath {
            options.control = .pidFile(path: pidPath)
        }
        let redirect = try boolean("DOCKNFV_REDIRECT_GATEWAY")
        let install = try boolean("DOCKNFV_DHCP_INSTALL_ROUTES")
        options.redirectGateway = redirectGateway || (redirect ?? false)
        options.installRoutes = !noRoutes && (install ?? true)
        return options
    }
}
