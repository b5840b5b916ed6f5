import Logging
import PostgresNIO
import TesseraPostgres
import TesseraTestSupport
import Testing

@Suite struct MigrationTests {
    @Test func migrateAppliesAllThenIsANoOp() async throws {
        let url = try await TestPostgres.shared.makeEmptyDatabase()
        try await withRunningClient(url) { client, logger in
            let migrator = try Migrator()
            #expect(try await migrator.pending(on: client, logger: logger).count == migrator.migrations.count)
            let first = try await migrator.migrate(client: client, logger: logger)
            #expect(first.map(\.version) == migrator.migrations.map(\.version))
            #expect(try await migrator.migrate(client: client, logger: logger).isEmpty)
            #expect(try await migrator.pending(on: client, logger: logger).isEmpty)
            let count = try await client.values("SELECT count(*) FROM tessera_migrations", as: Int.self)
            #expect(count == [migrator.migrations.count])
        }
    }

    @Test func concurrentMigratorsApplyOnce() async throws {
        let url = try await TestPostgres.shared.makeEmptyDatabase()
        try await withRunningClient(url) { client, logger in
            let migrator = try Migrator()
            let applied = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 { group.addTask { try await migrator.migrate(client: client, logger: logger).count } }
                return try await group.reduce(0, +)
            }
            #expect(applied == migrator.migrations.count)
        }
    }

    @Test func refusesAnEditedAppliedMigration() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            try await client.query("UPDATE tessera_migrations SET checksum = 'edited' WHERE version = 1")
            await #expect(throws: MigrationError.self) { try await Migrator().pending(on: client, logger: logger) }
            await #expect(throws: MigrationError.self) { try await Migrator().migrate(client: client, logger: logger) }
        }
    }

    @Test func refusesAnUnknownAppliedMigration() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            try await client.query(
                "INSERT INTO tessera_migrations (version, name, checksum) VALUES (9999, '9999_future', 'x')")
            await #expect(throws: MigrationError.unknownAppliedVersion(9999)) {
                try await Migrator().pending(on: client, logger: logger)
            }
        }
    }

    @Test func migrationFilesAreNumberedAndOrdered() throws {
        let migrations = try Migrator().migrations
        #expect(migrations.first?.name == "0001_init")
        #expect(migrations.map(\.version) == Array(1...migrations.count))
    }
}

@Suite struct DatabaseURLTests {
    @Test func parsesAFullURL() throws {
        let url = try DatabaseURL("postgres://u%40x:p%2Fw@db.example.com:6543/tessera?sslmode=require")
        #expect(url.username == "u@x")
        #expect(url.password == "p/w")
        #expect(url.host == "db.example.com")
        #expect(url.port == 6543)
        #expect(url.database == "tessera")
        #expect(url.sslMode == "require")
        #expect(!url.description.contains("p/w") && !url.description.contains("p%2Fw"))
    }

    @Test func defaults() throws {
        let url = try DatabaseURL("postgresql://tessera@localhost/app")
        #expect(url.port == 5432)
        #expect(url.password == nil)
        #expect(url.sslMode == "prefer")
    }

    @Test(arguments: [
        ("mysql://u@h/db", DatabaseURLError.notAPostgresURL),
        ("not a url", .notAPostgresURL),
        ("postgres://u@h", .missingDatabase),
        ("postgres://h/db", .missingUser),
        ("postgres://u@h/db?sslmode=sometimes", .unsupportedSSLMode("sometimes")),
    ])
    func rejects(raw: String, expected: DatabaseURLError) {
        #expect(throws: expected) { try DatabaseURL(raw) }
    }

    @Test func errorsNeverShowThePassword() {
        do {
            _ = try DatabaseURL("postgres://u:hunter2@h")
        } catch {
            #expect(!error.description.contains("hunter2"))
        }
    }
}

@Suite struct SQLScriptTests {
    @Test func splitsAtTopLevelSemicolonsOnly() {
        let script = """
            -- a comment; with a semicolon
            CREATE TABLE a (x text DEFAULT ';');
            /* block; comment */ CREATE TABLE "b;c" (y int);
            CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'no; way'; RETURN NEW; END;
            $$;
            CREATE FUNCTION g() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;
            -- trailing comment
            """
        let statements = SQLScript.statements(script)
        #expect(statements.count == 4)
        #expect(statements[0].hasSuffix("CREATE TABLE a (x text DEFAULT ';')"))
        #expect(statements[1].hasSuffix("CREATE TABLE \"b;c\" (y int)"))
        #expect(statements[2].contains("RETURN NEW; END;\n$$"))
        #expect(statements[3].hasSuffix("$body$ SELECT 1; $body$"))
    }
}
