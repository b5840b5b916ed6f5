import Foundation
import TesseraCore
import Testing

/// Path normalisation, rule matching and address ranges (DESIGN §14), without a server.
@Suite struct LeastPrivilegeRulesTests {
    @Test(arguments: [
        ("/a/b", "/a/b"), ("//a///b/", "/a/b"), ("/a/./b/.", "/a/b"), ("/a/b/../c", "/a/c"), ("/../../a", "/a"),
        ("/a/%2e%2e/b", "/b"), ("/a/%62", "/a/b"), ("/a/b?x=/../c", "/a/b"), ("/a#frag", "/a"), ("/", "/"),
    ])
    func pathsNormalise(_ raw: String, _ normalised: String) throws {
        #expect(try #require(RequestPath(raw)).text == normalised)
    }

    @Test(arguments: ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a\\b", "/a/%zz", "/a/%00", "relative", "", "/a\u{7}b"])
    func ambiguousPathsAreRefused(_ raw: String) {
        #expect(RequestPath(raw) == nil, "\(raw)")
    }

    @Test func tooLongPathsAreRefused() {
        #expect(RequestPath("/" + String(repeating: "a", count: 9000)) == nil)
        #expect(RequestPath(String(repeating: "/a", count: 300)) == nil)
    }

    @Test func wildcardsMatchSegments() throws {
        func allows(_ rule: String, _ method: String, _ path: String, host: String? = nil) throws -> Bool {
            let parts = rule.split(separator: " ").map(String.init)
            let made = try AccessRule(method: parts[0], path: parts[1], host: parts.count > 2 ? parts[2] : nil)
            return [made].allow(method: method, path: RequestPath(path), host: host)
        }
        #expect(try allows("GET /deployments/iris/**", "GET", "/deployments/iris"))
        #expect(try allows("GET /deployments/iris/**", "GET", "/deployments/iris/a/b/c"))
        #expect(try !allows("GET /deployments/iris/**", "GET", "/deployments/irises"))
        #expect(try allows("GET /deployments/*/logs", "GET", "/deployments/x/logs"))
        #expect(try !allows("GET /deployments/*/logs", "GET", "/deployments/logs"))
        #expect(try !allows("GET /deployments/*/logs", "GET", "/deployments/x/y/logs"))
        #expect(try allows("GET /**/logs", "GET", "/a/b/logs"))
        #expect(try allows("GET /a/**/z", "GET", "/a/z"))
        #expect(try allows("* /x", "PATCH", "/x"))
        #expect(try allows("GET /x", "HEAD", "/x"))
        #expect(try !allows("HEAD /x", "GET", "/x"))
        #expect(try allows("GET /x api.example.com", "GET", "/x", host: "API.example.com"))
        #expect(try !allows("GET /x api.example.com", "GET", "/x"))
        #expect([AccessRule]().allow(method: "DELETE", path: nil, host: nil), "no rules: anything")
        #expect(
            AccessRule(text: "GET /a/** h.example") == (try AccessRule(method: "get", path: "/a/**", host: "H.example"))
        )
    }

    @Test func addressRanges() throws {
        let ranges = try [AddressRange].checked(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "10.0.0.0/8"])
        #expect(ranges.map(\.text) == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
        #expect(ranges.allow("10.255.0.1") && ranges.allow("2001:db8:1::5") && ranges.allow("::ffff:10.0.0.1"))
        #expect(!ranges.allow("11.0.0.1") && !ranges.allow("192.0.2.8") && !ranges.allow(nil) && !ranges.allow("x"))
        #expect([AddressRange]().allow(nil))
        #expect(try AddressRange("0.0.0.0/0").contains(AddressRange.parse("8.8.8.8")!))
        for bad in ["10.1.2.3/8", "1.2.3.4/33", "::/129", "1.2.3", "10.0.0.0/x", ""] {
            #expect(throws: DomainError.self, "\(bad)") { try AddressRange(bad) }
        }
        do {
            _ = try AddressRange("10.1.2.3/8")
        } catch {
            #expect(error.message.contains("10.0.0.0/8"), "the refusal names the network")
        }
    }
}
