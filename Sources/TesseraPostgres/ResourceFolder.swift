import Foundation

/// Folders of files the binary reads at run time (`sql/`, `web/`).
public enum ResourceFolder {
    /// `$environment`, `./name`, `<binary>/../share/tessera/name`, or the checkout the binary was
    /// built from: the first that holds `marker`.
    public static func locate(_ name: String, marker: String, environment variable: String) throws -> String {
        let environment = ProcessInfo.processInfo.environment
        if let configured = environment[variable], !configured.isEmpty { return configured }
        var candidates = [FileManager.default.currentDirectoryPath + "/" + name]
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        candidates.append(
            executable.deletingLastPathComponent().appendingPathComponent("../share/tessera/" + name).standardized.path)
        candidates.append(
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
                .appendingPathComponent(name).path)
        for candidate in candidates where FileManager.default.fileExists(atPath: candidate + "/" + marker) {
            return candidate
        }
        throw ResourceFolderError.notFound(name, candidates)
    }
}

public enum ResourceFolderError: Error, CustomStringConvertible {
    case notFound(String, [String])
    public var description: String {
        switch self {
        case .notFound(let name, let places): "\(name) folder not found (looked in \(places.joined(separator: ", ")))"
        }
    }
}
