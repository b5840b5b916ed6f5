import Foundation

/// A SCIM PATCH body (RFC 7644 §3.5.2) applied to a resource's JSON, with the shapes the big
/// IdPs send: Okta's path-less `replace` with a value object (`{"active": false}`), Entra ID's
/// capitalised ops (`Replace`), string booleans (`"False"`), and `members[value eq "…"]` paths.
/// The result is validated by the caller as a PUT of the whole resource would be.
public struct SCIMPatch: Sendable {
    public enum Op: String, Sendable {
        case add, replace, remove
    }

    public struct Operation: Sendable {
        public var op: Op
        public var path: String?
        public var value: JSONValue?
    }

    public var operations: [Operation]

    public static let schema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

    /// Reads a PatchOp body; anything else is `invalidSyntax` / `invalidValue`.
    public init(_ body: JSONValue) throws(SCIMError) {
        guard let items = body["Operations"]?.array, !items.isEmpty else {
            throw SCIMError.invalidSyntax("a PATCH body holds a non-empty Operations list")
        }
        guard items.count <= 1000 else { throw SCIMError.invalidValue("at most 1000 operations per PATCH") }
        var operations: [Operation] = []
        for item in items {
            guard let name = item["op"]?.string, let op = Op(rawValue: name.lowercased()) else {
                throw SCIMError.invalidSyntax("each operation has an op: add, replace or remove")
            }
            let path = item["path"]?.string
            let value = item["value"]
            if op == .remove && path == nil {
                throw SCIMError.noTarget("a remove operation needs a path")
            }
            if op != .remove && (value == nil || value == .null) && path == nil {
                throw SCIMError.invalidValue("an \(op.rawValue) operation without a path needs a value object")
            }
            operations.append(Operation(op: op, path: path, value: value))
        }
        self.operations = operations
    }

    /// Applies every operation in order to `resource`; `readOnly` names attributes that may not
    /// be changed (`mutability`).
    public func apply(to resource: JSONValue, readOnly: Set<String>) throws(SCIMError) -> JSONValue {
        var resource = resource
        for operation in operations {
            if let path = operation.path {
                let target = try Target(parsing: path)
                guard !readOnly.contains(target.attribute.lowercased()) else {
                    throw SCIMError.mutability("\(target.attribute) is read-only")
                }
                try target.apply(operation.op, operation.value, to: &resource)
            } else {
                // Okta: {"op": "replace", "value": {"active": false, "name.givenName": "…"}}
                guard case .object(let members) = operation.value ?? .null else {
                    throw SCIMError.invalidValue("an operation without a path needs a value object")
                }
                for (key, value) in members.sorted(by: { $0.key < $1.key }) {
                    let target = try Target(parsing: key)
                    if readOnly.contains(target.attribute.lowercased()) {
                        if target.attribute.lowercased() == "id" || target.attribute.lowercased() == "schemas" {
                            continue
                        }
                        throw SCIMError.mutability("\(target.attribute) is read-only")
                    }
                    try target.apply(operation.op, value, to: &resource)
                }
            }
        }
        return resource
    }

    /// `attribute`, `attribute.sub`, `attribute[filter]` or `attribute[filter].sub`.
    struct Target {
        var attribute: String
        var filter: SCIMFilter?
        var subAttribute: String?

        init(parsing path: String) throws(SCIMError) {
            var text = path.trimmingCharacters(in: .whitespaces)
            if text.lowercased().hasPrefix("urn:") {
                // urn:ietf:params:scim:schemas:core:2.0:User:name.givenName (the attribute after the last ':'
                // that precedes any '[').
                let head = text.split(separator: "[", maxSplits: 1).first.map(String.init) ?? text
                if let colon = head.lastIndex(of: ":") { text = String(text[text.index(after: colon)...]) }
            }
            if let open = text.firstIndex(of: "[") {
                guard let close = text.lastIndex(of: "]"), close > open else {
                    throw SCIMError.invalidPath("'\(path)' has an unclosed '['")
                }
                attribute = String(text[..<open])
                filter = try SCIMFilter(parsing: String(text[text.index(after: open)..<close]))
                let rest = text[text.index(after: close)...]
                if rest.hasPrefix(".") {
                    subAttribute = String(rest.dropFirst())
                } else if !rest.isEmpty {
                    throw SCIMError.invalidPath("'\(path)' is not an attribute path")
                }
            } else {
                let parts = text.split(separator: ".", maxSplits: 1).map(String.init)
                attribute = parts.first ?? ""
                subAttribute = parts.count > 1 ? parts[1] : nil
            }
            guard !attribute.isEmpty, attribute.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "$" || $0 == "_" })
            else { throw SCIMError.invalidPath("'\(path)' is not an attribute path") }
        }

        func apply(_ op: SCIMPatch.Op, _ value: JSONValue?, to resource: inout JSONValue) throws(SCIMError) {
            let current = resource[attribute]
            if let filter {
                try applyFiltered(op, value, filter: filter, current: current, to: &resource)
                return
            }
            if let subAttribute {
                var parent = current ?? .object([:])
                if case .array = parent {
                    throw SCIMError.invalidPath("\(attribute) holds several values: select one with a filter")
                }
                if case .object = parent {} else { parent = .object([:]) }
                switch op {
                case .remove: parent.set(subAttribute, nil)
                case .add, .replace: parent.set(subAttribute, value ?? .null)
                }
                resource.set(attribute, parent)
                return
            }
            switch op {
            case .remove:
                if let value, case .array(let removed) = current ?? .null, case .array(let toRemove) = value {
                    // Entra: {"op": "Remove", "path": "members", "value": [{"value": "<id>"}]}
                    let ids = Set(toRemove.compactMap { $0["value"]?.string })
                    resource.set(attribute, .array(removed.filter { !ids.contains($0["value"]?.string ?? "") }))
                } else {
                    resource.set(attribute, nil)
                }
            case .add:
                if case .array(let existing) = current ?? .null {
                    let added = value?.array ?? value.map { [$0] } ?? []
                    resource.set(attribute, .array(Self.merge(existing, added)))
                } else if case .object(let existing) = current ?? .null, case .object(let added) = value ?? .null {
                    resource.set(attribute, .object(existing.merging(added) { _, new in new }))
                } else {
                    resource.set(attribute, value ?? .null)
                }
            case .replace:
                resource.set(attribute, value ?? .null)
            }
        }

        private func applyFiltered(
            _ op: SCIMPatch.Op, _ value: JSONValue?, filter: SCIMFilter, current: JSONValue?,
            to resource: inout JSONValue
        ) throws(SCIMError) {
            var items = current?.array ?? []
            let matching = items.indices.filter { filter.matches(items[$0]) }
            switch op {
            case .remove:
                if let subAttribute {
                    for index in matching { items[index].set(subAttribute, nil) }
                } else {
                    items = items.enumerated().filter { !matching.contains($0.offset) }.map(\.element)
                }
            case .add, .replace:
                if matching.isEmpty {
                    // Entra's `emails[type eq "work"].value` on a user without one: make the element.
                    guard case .compare(let path, .eq, let key) = filter, path.names.count == 1 else {
                        throw SCIMError.noTarget("no value of \(attribute) matches the filter")
                    }
                    var element: JSONValue = .object([path.names[0]: key])
                    if let subAttribute {
                        element.set(subAttribute, value ?? .null)
                    } else if case .object(let members) = value ?? .null {
                        for (k, v) in members { element.set(k, v) }
                    }
                    items.append(element)
                } else {
                    for index in matching {
                        if let subAttribute {
                            items[index].set(subAttribute, value ?? .null)
                        } else if case .object(let members) = value ?? .null {
                            for (k, v) in members { items[index].set(k, v) }
                        } else {
                            throw SCIMError.invalidValue("a value for \(attribute)[…] must be an object")
                        }
                    }
                }
            }
            resource.set(attribute, .array(items))
        }

        /// Adds values to a multi-valued attribute, skipping those already there (by `value`).
        static func merge(_ existing: [JSONValue], _ added: [JSONValue]) -> [JSONValue] {
            var result = existing
            for item in added where !result.contains(where: { Self.same($0, item) }) {
                result.append(item)
            }
            return result
        }

        static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
            if let x = a["value"], let y = b["value"] { return x == y }
            return a == b
        }
    }
}
