/// Each setting of docknfv-dhcp-hook: its environment variable and its command-line option
/// (`resolve` reads exactly these variables; the executable declares exactly these options).
public enum HookSetting: CaseIterable, Sendable {
    case pushFile, management, pidFile, redirectGateway, installRoutes

    public var variable: String {
        switch self {
        case .pushFile: "DOCKNFV_PUSH_FILE"
        case .management: "DOCKNFV_OPENVPN_MANAGEMENT"
        case .pidFile: "DOCKNFV_OPENVPN_PIDFILE"
        case .redirectGateway: "DOCKNFV_REDIRECT_GATEWAY"
        case .installRoutes: "DOCKNFV_DHCP_INSTALL_ROUTES"
        }
    }

    /// The long option, without its dashes (`--no-routes` turns `installRoutes` off).
    public var option: String {
        switch self {
        case .pushFile: "push-file"
        case .management: "management"
        case .pidFile: "pid-file"
        case .redirectGateway: "redirect-gateway"
        case .installRoutes: "no-routes"
        }
    }
}

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
        func value(_ setting: HookSetting, _ option: String?) throws(HookError) -> String? {
            let fromEnv = env[setting.variable]
            if fromEnv?.isEmpty == true { throw .invalidSetting(name: setting.variable, value: "", reason: "is set but empty; unset it for the default") }
            if option?.isEmpty == true { throw .invalidSetting(name: "--" + setting.option, value: "", reason: "is empty") }
            return option ?? fromEnv
        }
        func boolean(_ setting: HookSetting) throws(HookError) -> Bool? {
            guard let text = try value(setting, nil) else { return nil }
            if trueSpellings.contains(text.lowercased()) { return true }
            if falseSpellings.contains(text.lowercased()) { return false }
            throw .invalidSetting(name: setting.variable, value: text,
                                  reason: "expected one of \((trueSpellings + falseSpellings).joined(separator: ", "))")
        }

        var options = HookOptions()
        options.pushFile = try value(.pushFile, pushFile) ?? defaultPushFile
        let managementText = try value(.management, management)
        let pidPath = try value(.pidFile, pidFile)
        if let managementText {
            guard let control = OpenVPNControl.management(managementText) else {
                throw .invalidSetting(name: management != nil ? "--" + HookSetting.management.option : HookSetting.management.variable, value: managementText,
                                      reason: "expected unix:PATH or HOST:PORT")
            }
            options.control = control
        } else if let pidPath {
            options.control = .pidFile(path: pidPath)
        }
        let redirect = try boolean(.redirectGateway)
        let install = try boolean(.installRoutes)
        options.redirectGateway = redirectGateway || (redirect ?? false)
        options.installRoutes = !noRoutes && (install ?? true)
        return options
    }
}
