import ASG
import CNI
import NetTypes
import StateFiles

/// Reads Cloud Foundry's `netOutRules` (garden's NetOutRule JSON).
enum ASGConfig {
    static func rules(_ items: [ConfigReader]) throws(CNIError) -> [EgressRule] {
        var out: [EgressRule] = []
        for item in items {
            try item.refuseUnknown(.netOutRule)
            let proto = try self.proto(item)
            var networks: [EgressRule.Range] = []
            for network in try item.objects("networks") {
                try network.refuseUnknown(.netOutNetwork)
                guard let startText = try network.string("start"), let start = IPAddress(startText) else {
                    throw CNIError.config(network.field("start"), "missing or not an IP address")
                }
                let endText = try network.string("end") ?? startText
                guard let end = IPAddress(endText), end.family == start.family else { throw CNIError.config(network.field("end"), "\"\(endText)\" is not an address of the start's family") }
                guard !(end < start) else { throw CNIError.config(network.path, "start \(start) is after end \(end)") }
                networks.append(.init(start: start, end: end))
            }
            let ports = try self.ports(item)
            if !ports.isEmpty && proto != .tcp && proto != .udp { throw CNIError.config(item.field("ports"), "ports need protocol tcp or udp") }
            var type: UInt8?, code: UInt8?
            if let icmp = try item.object("icmp_info") {
                try icmp.refuseUnknown(.icmpInfo)
                if proto != .icmp { throw CNIError.config(icmp.path, "icmp_info needs protocol icmp") }
                // -1 (or no value) is "any", as the Cloud Foundry CLI writes it.
                if let value = try icmp.int("type", in: -1...255), value >= 0 { type = UInt8(value) }
                if let value = try icmp.int("code", in: -1...255), value >= 0 {
                    guard type != nil else { throw CNIError.config(icmp.field("code"), "a code needs a type") }
                    code = UInt8(value)
                }
            }
            out.append(EgressRule(proto: proto, networks: networks, ports: ports, icmpType: type, icmpCode: code, log: try item.bool("log") ?? false))
        }
        return out
    }

    /// A name (all, tcp, udp, icmp) or garden's number for it (0 all, 1 tcp, 2 udp, 3 icmp).
    static func proto(_ item: ConfigReader) throws(CNIError) -> EgressRule.Proto {
        guard let value = item["protocol"] else { return .all }
        if let number = value.int {
            switch number {
            case 0: return .all
            case 1: return .tcp
            case 2: return .udp
            case 3: return .icmp
            default: throw CNIError.config(item.field("protocol"), "\(number): expected 0 (all), 1 (tcp), 2 (udp) or 3 (icmp)")
            }
        }
        switch value.string?.lowercased() {
        case "all", "": return .all
        case "tcp": return .tcp
        case "udp": return .udp
        case "icmp": return .icmp
        default: throw CNIError.config(item.field("protocol"), "\(value.string.map { "\"\($0)\"" } ?? "value"): expected all, tcp, udp or icmp")
        }
    }

    /// `[{"start": 80, "end": 80}]`, or the ASG API's text form `"80, 443, 8000-8100"` (spaces allowed).
    static func ports(_ item: ConfigReader) throws(CNIError) -> [ClosedRange<UInt16>] {
        guard let value = item["ports"] else { return [] }
        var out: [ClosedRange<UInt16>] = []
        if let text = value.string {
            for part in text.split(separator: ",") {
                let trimmed = part.filter { $0 != " " && $0 != "\t" }
                let bounds = trimmed.split(separator: "-", omittingEmptySubsequences: false).map { UInt16($0) }
                guard (1...2).contains(bounds.count), let low = bounds.first!, let high = bounds.last!, low > 0, low <= high else {
                    throw CNIError.config(item.field("ports"), "\"\(part.prefix(20))\" is not a port or range in 1–65535")
                }
                out.append(low...high)
            }
            if out.isEmpty { throw CNIError.config(item.field("ports"), "is empty") }
            return out
        }
        for range in try item.objects("ports") {
            try range.refuseUnknown(.netOutPorts)
            guard let start = try range.int("start", in: 1...65535) else { throw CNIError.config(range.field("start"), "missing") }
            let end = try range.int("end", in: 1...65535) ?? start
            guard start <= end else { throw CNIError.config(range.path, "start \(start) is greater than end \(end)") }
            out.append(UInt16(start)...UInt16(end))
        }
        return out
    }
}
