import Foundation
import TesseraCore
import Testing

/// Standard Webhooks signatures: the specification's own example, and secrets that are refused.
@Suite struct WebhookSignatureTests {
    @Test func signsLikeTheSpecificationsExample() throws {
        let secret = try WebhookSecret(parsing: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        let signature = secret.signature(
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Data(#"{"test": 2432232314}"#.utf8))
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    @Test func generatedSecretsParseAndBadOnesAreRefused() throws {
        let generated = WebhookSecret.generate()
        #expect(try WebhookSecret(parsing: generated.encoded).encoded == generated.encoded)
        #expect(!"\(generated)".contains(generated.encoded.dropFirst(6)), "description is redacted")
        for bad in ["", "whsec_", "whsec_!!!", "sk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2hvcnQ="] {
            #expect(throws: WebhookSecretError.self) { try WebhookSecret(parsing: bad) }
        }
    }
}
