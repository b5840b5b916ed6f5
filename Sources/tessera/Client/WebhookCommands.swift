import ArgumentParser
import Foundation
import TesseraAPI

/// `tessera webhook …`: an org admin's webhooks and their delivery log (DESIGN §11).
struct WebhookCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook", abstract: "Manage the organization's webhooks and read their delivery log (admins).",
        subcommands: [List.self, Add.self, Update.self, Remove.self, Deliveries.self, Redeliver.self])

    static func path(_ client: APIClient, _ org: String, _ rest: String = "") -> String {
        "/orgs/\(client.escape(org))/webhooks" + rest
    }

    /// The fields of one webhook; the secret only when the answer carries it (shown once).
    static func show(_ hook: WebhookInfo, printer: Printer) {
        var fields = [
            ("Id", hook.id), ("URL", hook.url), ("Events", Printer.text(hook.events)),
            ("Active", Printer.text(hook.active)), ("Description", Printer.text(hook.description)),
        ]
        if let secret = hook.secret {
            fields.append(("Secret", secret))
            FileHandle.standardError.write(
                Data("The signing secret is shown once: store it with the receiver now.\n".utf8))
        }
        printer.fields(fields)
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List webhooks.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let client = try options.client()
            let reply = try await client.send(
                "GET", WebhookCommand.path(client, try await actingOrg(client)), as: WebhookList.self)
            let printer = options.printer
            if printer.structured(reply) { return }
            printer.table(
                ["ID", "URL", "EVENTS", "ACTIVE"],
                reply.webhooks.map { [$0.id, $0.url, Printer.text($0.events), Printer.text($0.active)] })
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a webhook; prints its signing secret once.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "http:// or https:// URL of the receiver.") var url: String
        @Option(name: .customLong("event"), help: "An event to send (repeatable; default: all).") var events: [String] =
            []
        @Option(help: "What it is for.") var description: String?

        func run() async throws {
            let body = WebhookCreateRequest(url: url, events: events.isEmpty ? nil : events, description: description)
            let client = try options.client()
            let hook = try await client.send(
                "POST", WebhookCommand.path(client, try await actingOrg(client)), body: body, as: WebhookInfo.self)
            if options.printer.structured(hook) { return }
            WebhookCommand.show(hook, printer: options.printer)
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a webhook, pause or resume it, or rotate its secret.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Webhook id.") var id: String
        @Option(help: "New URL.") var url: String?
        @Option(name: .customLong("event"), help: "An event to send (repeatable; replaces the list).") var events:
            [String] = []
        @Option(help: "true or false.") var active: Bool?
        @Flag(name: .customLong("rotate-secret"), help: "Make a new signing secret (printed once).") var rotate = false

        func run() async throws {
            let body = WebhookUpdateRequest(
                url: url, events: events.isEmpty ? nil : events, active: active, rotateSecret: rotate ? true : nil)
            let client = try options.client()
            let hook = try await client.send(
                "PATCH", WebhookCommand.path(client, try await actingOrg(client), "/\(client.escape(id))"), body: body,
                as: WebhookInfo.self)
            if options.printer.structured(hook) { return }
            WebhookCommand.show(hook, printer: options.printer)
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a webhook and its delivery log.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Webhook id.") var id: String
        @Flag(name: [.short, .customLong("yes")], help: "Do not ask.") var yes = false

        func run() async throws {
            try confirm(yes, "Remove webhook \(id)? Undelivered events are dropped.")
            let client = try options.client()
            try await client.send(
                "DELETE", WebhookCommand.path(client, try await actingOrg(client), "/\(client.escape(id))"))
            FileHandle.standardError.write(Data("Removed webhook \(id)\n".utf8))
        }
    }

    struct Deliveries: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The delivery log of a webhook, newest first.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Webhook id.") var id: String
        @Option(help: "How many (1-500).") var limit = 50

        func run() async throws {
            let client = try options.client()
            let reply = try await client.send(
                "GET", WebhookCommand.path(client, try await actingOrg(client), "/\(client.escape(id))/deliveries"),
                query: [("limit", String(limit))], as: DeliveryList.self)
            let printer = options.printer
            if printer.structured(reply) { return }
            printer.table(
                ["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "NEXT", "CREATED"],
                reply.deliveries.map {
                    [
                        $0.id, $0.event, $0.status, String($0.attempts),
                        $0.lastError ?? Printer.text($0.lastStatus), Printer.date($0.nextAttemptDate),
                        Printer.date($0.createdDate),
                    ]
                })
        }
    }

    struct Redeliver: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a delivery again (same webhook-id).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Webhook id.") var id: String
        @Argument(help: "Delivery id.") var delivery: String

        func run() async throws {
            let client = try options.client()
            try await client.send(
                "POST",
                WebhookCommand.path(
                    client, try await actingOrg(client),
                    "/\(client.escape(id))/deliveries/\(client.escape(delivery))/redeliver"))
            FileHandle.standardError.write(Data("Delivery \(delivery) queued\n".utf8))
        }
    }
}
