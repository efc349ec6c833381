using System.Text;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Server.Handlers;
using Enroll.Testing;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Enroll.Server.Tests.Fuzzing;

/// <summary>
/// Thousands of generated payloads per run against the real request handlers and registry: random bytes, JSON with the
/// protocol's field names and wrong-typed or absurd values, deep nesting, invalid UTF-8, truncations. Every request must
/// get exactly one well-formed answer (success or a known error code) and nothing may escape as an exception.
/// </summary>
public sealed class RequestHandlerFuzzTests : IClassFixture<RequestHandlerFuzzTests.Harness>
{
    private static readonly string[] Fields =
    [
        "client_id", "device_id", "device_name", "org_id", "metadata", "provisioning_token", "registration_token", "request_id",
        "operation_id", "desired_device_id", "unknown_field",
    ];

    private static readonly HashSet<string> KnownCodes =
    [
        ErrorCodes.InvalidRequest, ErrorCodes.Unauthorized, ErrorCodes.Forbidden, ErrorCodes.Rejected, ErrorCodes.Expired, ErrorCodes.NotFound,
        ErrorCodes.Conflict, ErrorCodes.RateLimited, ErrorCodes.Unavailable, ErrorCodes.ApprovalRequired,
    ];

    private static readonly string[] OpenTopics = [.. Enroll.Protocol.Requests.EnrollRequests.Open.Select(r => r.Topic)];

    private readonly Harness _harness;

    public RequestHandlerFuzzTests(Harness harness) => _harness = harness;

    [Property(MaxTest = 1500, Arbitrary = [typeof(Payloads)])]
    public bool AnyPayloadOnAnyRequestTopic_GetsExactlyOneWellFormedAnswer(FuzzCase fuzz) => _harness.Check(fuzz);

    [Property(MaxTest = 1000)]
    public bool RandomBytes_GetAnInvalidRequestAnswer(byte[] bytes, int topic, bool knownSender) =>
        _harness.Check(new FuzzCase(OpenTopics[Math.Abs(topic % OpenTopics.Length)], bytes, knownSender));

    public sealed record FuzzCase(string Topic, byte[] Payload, bool KnownSender)
    {
        public override string ToString() => $"{Topic} sender={KnownSender} {Encoding.UTF8.GetString(Payload)[..Math.Min(200, Payload.Length)]}";
    }

    public static class Payloads
    {
        public static Arbitrary<FuzzCase> Cases() => Gen.OneOf(JsonCase(), Mutated(), Deep()).ToArbitrary();

        private static Gen<FuzzCase> JsonCase() =>
            from topic in Gen.Elements(OpenTopics)
            from fields in Gen.ListOf(Gen.Elements(Fields).SelectMany(f => Value(2).Select(v => $"\"{f}\":{v}")))
            from sender in ArbMap.Default.GeneratorFor<bool>()
            select new FuzzCase(topic, Encoding.UTF8.GetBytes("{" + string.Join(',', fields.Take(12)) + "}"), sender);

        private static Gen<FuzzCase> Mutated() =>
            from json in JsonCase()
            from cut in Gen.Choose(0, 100)
            from flip in Gen.Choose(0, 255)
            select json with { Payload = Mutate(json.Payload, cut, (byte)flip) };

        private static Gen<FuzzCase> Deep() =>
            from depth in Gen.Choose(10, 5000)
            from topic in Gen.Elements(OpenTopics)
            select new FuzzCase(topic, Encoding.UTF8.GetBytes("{\"metadata\":" + new string('[', depth) + new string(']', depth) + "}"), false);

        private static Gen<string> Value(int depth)
        {
            var scalars = Gen.OneOf(
                Gen.Constant("null"),
                Gen.Elements("true", "false", "0", "-1", "1e309", "12345678901234567890", "\"\"", "\"c1\"", "\"dev_x\"", "\"ept_x.y\"", "\"a/b/#\"", "\"+\""),
                ArbMap.Default.GeneratorFor<string>().Select(s => JsonSerializer.Serialize(s ?? string.Empty)),
                Gen.Choose(1, 70_000).Select(n => "\"" + new string('x', n) + "\""));
            return depth == 0
                ? scalars
                : Gen.OneOf(
                    scalars,
                    Gen.ListOf(Value(depth - 1)).Select(items => "[" + string.Join(',', items.Take(5)) + "]"),
                    Gen.ListOf(Value(depth - 1)).Select(items => "{" + string.Join(',', items.Take(5).Select((v, i) => $"\"k{i}\":{v}")) + "}"));
        }

        private static byte[] Mutate(byte[] payload, int cut, byte flip)
        {
            if (payload.Length == 0)
            {
                return [flip];
            }

            var copy = payload[..Math.Max(1, payload.Length * cut / 100)];
            copy[copy.Length / 2] ^= flip;
            return copy;
        }
    }

    /// <summary>A real server's handlers and registry behind a dispatcher whose answers are captured.</summary>
    public sealed class Harness : IAsyncLifetime
    {
        private readonly CapturingPublisher _publisher = new();
        private TestServer _server = null!;
        private RequestDispatcher _dispatcher = null!;

        public async Task InitializeAsync()
        {
            _server = await TestServer.StartAsync();
            _dispatcher = ServerTestKit.Dispatcher(_server, _publisher);
        }

        public bool Check(FuzzCase fuzz)
        {
            _publisher.Answers.Clear();
            var request = new IncomingRequest(fuzz.Topic, fuzz.Payload)
            {
                ResponseTopic = "enroll/v1/clients/fuzzer/responses",
                CorrelationData = [1, 2, 3],
                SenderClientId = fuzz.KnownSender ? "fuzzer" : null,
                ReceivedAt = DateTimeOffset.UtcNow,
            };

            // ProcessAsync never throws by contract; if it did, the property fails with the exception.
            _dispatcher.ProcessAsync(request, CancellationToken.None).GetAwaiter().GetResult();

            if (_publisher.Answers.Count != 1)
            {
                return false;
            }

            using var answer = JsonDocument.Parse(_publisher.Answers.Single());
            if (answer.RootElement.TryGetProperty("error", out var error))
            {
                return KnownCodes.Contains(error.GetProperty("code").GetString()!) && error.GetProperty("message").GetString()!.Length > 0;
            }

            // A success answer to garbage would mean the fuzzer guessed a credential; impossible here.
            return false;
        }

        public async Task DisposeAsync() => await _server.DisposeAsync();
    }
}
