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

    private static readonly string[] DeviceFields =
    [
        "desired_version", "patch", "request_id", "command_id", "status", "payload", "message", "client_id", "device_id", "unknown_field",
    ];

    /// <summary>Which device a device-scoped topic names: registered and active, revoked, or never registered.</summary>
    public enum TopicDevice
    {
        Active,
        Revoked,
        Unknown,
    }

    private readonly Harness _harness;

    public RequestHandlerFuzzTests(Harness harness) => _harness = harness;

    [Property(MaxTest = 1500, Arbitrary = [typeof(Payloads)])]
    public bool AnyPayloadOnAnyRequestTopic_GetsExactlyOneWellFormedAnswer(FuzzCase fuzz) => _harness.Check(fuzz);

    [Property(MaxTest = 1000)]
    public bool RandomBytes_GetAnInvalidRequestAnswer(byte[] bytes, int topic, bool knownSender) =>
        _harness.Check(new FuzzCase(OpenTopics[Math.Abs(topic % OpenTopics.Length)], bytes, knownSender));

    [Property(MaxTest = 1500, Arbitrary = [typeof(DevicePayloads)])]
    public bool AnyPayloadOnADevicesTwinTopics_GetsExactlyOneWellFormedAnswer_OnThatDevicesResponseTopic(DeviceFuzzCase fuzz) => _harness.Check(fuzz);

    [Property(MaxTest = 500)]
    public bool RandomBytesOnADevicesTwinTopics_GetAnInvalidRequestAnswer_OnThatDevicesResponseTopic(byte[] bytes, int request, bool brokerKnowsSender) =>
        _harness.Check(new DeviceFuzzCase(DevicePayloads.Requests[Math.Abs(request % DevicePayloads.Requests.Length)], TopicDevice.Active, bytes, brokerKnowsSender));

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

        internal static Gen<string> JsonValue(int depth) => Value(depth);

        internal static byte[] MutateBytes(byte[] payload, int cut, byte flip) => Mutate(payload, cut, flip);

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

    /// <summary>
    /// A request on <c>enroll/v1/devices/{device}/...</c> (<see cref="Enroll.Protocol.Requests.EnrollRequest.IsDeviceScoped"/>); with
    /// <paramref name="BrokerKnowsSender"/> the transport vouches the sender is that device (embedded broker), else it
    /// says nothing (an external broker, whose ACL vouched).
    /// </summary>
    public sealed record DeviceFuzzCase(Enroll.Protocol.Requests.EnrollRequest Request, TopicDevice Device, byte[] Payload, bool BrokerKnowsSender)
    {
        public override string ToString() => $"{Request.Name} device={Device} sender={BrokerKnowsSender} {Encoding.UTF8.GetString(Payload)[..Math.Min(200, Payload.Length)]}";
    }

    public static class DevicePayloads
    {
        public static readonly Enroll.Protocol.Requests.EnrollRequest[] Requests =
            [.. Enroll.Protocol.Requests.EnrollRequests.DeviceScoped.Where(r => r.DeviceSuffix!.StartsWith("twin/", StringComparison.Ordinal))];

        public static Arbitrary<DeviceFuzzCase> Cases() => Gen.OneOf(JsonCase(), HostilePatch(), Mutated()).ToArbitrary();

        private static Gen<DeviceFuzzCase> JsonCase() =>
            from request in Gen.Elements(Requests)
            from device in Gen.Elements(TopicDevice.Active, TopicDevice.Active, TopicDevice.Revoked, TopicDevice.Unknown)
            from fields in Gen.ListOf(Gen.Elements(DeviceFields).SelectMany(f => Payloads.JsonValue(2).Select(v => $"\"{f}\":{v}")))
            from sender in ArbMap.Default.GeneratorFor<bool>()
            select new DeviceFuzzCase(request, device, Encoding.UTF8.GetBytes("{" + string.Join(',', fields.Take(8)) + "}"), sender);

        /// <summary>Well-formed requests whose patch breaks a twin limit: names with <c>$</c> or <c>.</c>, too deep, too large, empty names.</summary>
        private static Gen<DeviceFuzzCase> HostilePatch() =>
            from request in Gen.Elements(Requests)
            from patch in Gen.OneOf(
                Gen.Elements("{\"$version\":1}", "{\"a.b\":1}", "{\"\":1}", "{\"ok\":{\"x$\":null}}", "{\"" + new string('k', 129) + "\":1}", "[1,2]", "\"text\"", "null", "{}"),
                Gen.Choose(9, 40).Select(depth => string.Concat(Enumerable.Repeat("{\"d\":", depth)) + "1" + new string('}', depth)),
                Gen.Choose(1, 40).Select(kib => "{\"blob\":\"" + new string('x', kib * 1024) + "\"}"))
            from version in Gen.Elements("0", "-1", "1", "99999999999", "1.5", "\"2\"", "null")
            from sender in ArbMap.Default.GeneratorFor<bool>()
            select new DeviceFuzzCase(request, TopicDevice.Active, Encoding.UTF8.GetBytes(request.DeviceSuffix == "twin/get" ? $"{{\"desired_version\":{version}}}" : $"{{\"patch\":{patch}}}"), sender);

        private static Gen<DeviceFuzzCase> Mutated() =>
            from json in JsonCase()
            from cut in Gen.Choose(0, 100)
            from flip in Gen.Choose(0, 255)
            select json with { Payload = Payloads.MutateBytes(json.Payload, cut, (byte)flip) };
    }

    /// <summary>A real server's handlers and registry behind a dispatcher whose answers are captured.</summary>
    public sealed class Harness : IAsyncLifetime
    {
        private readonly CapturingPublisher _publisher = new();
        private readonly TopicPublisher _devicePublisher = new();
        private readonly TempDirectory _states = new();
        private TestServer _server = null!;
        private RequestDispatcher _dispatcher = null!;
        private RequestDispatcher _deviceDispatcher = null!;
        private string _activeDevice = null!;
        private string _revokedDevice = null!;

        public async Task InitializeAsync()
        {
            _server = await TestServer.StartAsync();
            _dispatcher = ServerTestKit.Dispatcher(_server, _publisher);
            _deviceDispatcher = ServerTestKit.Dispatcher(_server, _devicePublisher);
            _activeDevice = await RegisterAsync("fuzz-active");
            _revokedDevice = await RegisterAsync("fuzz-revoked");
            await _server.RevokeDeviceAsync(_revokedDevice);
        }

        private async Task<string> RegisterAsync(string clientId)
        {
            var token = await _server.CreateTokenAsync();
            await using var device = DeviceHarness.Create(_server.MqttEndpoint, clientId, _states.Combine(clientId), token.Token);
            return (await device.Registration.StartAsync()).DeviceId;
        }

        public bool Check(DeviceFuzzCase fuzz)
        {
            _devicePublisher.Answers.Clear();
            var deviceId = fuzz.Device switch
            {
                TopicDevice.Active => _activeDevice,
                TopicDevice.Revoked => _revokedDevice,
                _ => "dev_01fuzznobody",
            };
            var ownTopic = Enroll.Protocol.Topics.EnrollTopics.DeviceResponses(deviceId);
            var request = new IncomingRequest(fuzz.Request.TopicFor(deviceId), fuzz.Payload)
            {
                ResponseTopic = ownTopic,
                CorrelationData = [4, 5, 6],
                SenderClientId = fuzz.BrokerKnowsSender ? "fuzz-device" : null,
                SenderDeviceId = fuzz.BrokerKnowsSender ? deviceId : null,
                ReceivedAt = DateTimeOffset.UtcNow,
            };

            _deviceDispatcher.ProcessAsync(request, CancellationToken.None).GetAwaiter().GetResult();

            if (_devicePublisher.Answers.Count != 1)
            {
                return false;
            }

            var (topic, correlation, payload) = _devicePublisher.Answers.Single();
            if (topic != ownTopic || correlation is not [4, 5, 6])
            {
                return false;
            }

            using var answer = JsonDocument.Parse(payload);
            var root = answer.RootElement;
            if (root.TryGetProperty("error", out var error))
            {
                return KnownCodes.Contains(error.GetProperty("code").GetString()!) && error.GetProperty("message").GetString()!.Length > 0
                    && (fuzz.Device == TopicDevice.Active || error.GetProperty("code").GetString() is ErrorCodes.InvalidRequest or ErrorCodes.Forbidden or ErrorCodes.NotFound);
            }

            // A success is possible here (the topic, not a credential, names the device), but only for the active one,
            // and it must be the whole answer the request type promises.
            return fuzz.Device == TopicDevice.Active && fuzz.Request.DeviceSuffix switch
            {
                "twin/get" => root.GetProperty("desired_version").GetInt64() >= 0
                    && root.TryGetProperty("patches", out _) != root.TryGetProperty("document", out _)
                    && root.GetProperty("reported").ValueKind == JsonValueKind.Object
                    && root.GetProperty("reported_version").GetInt64() >= 0,
                "twin/report" => root.GetProperty("reported_version").GetInt64() > 0,
                _ => false,
            };
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

        public async Task DisposeAsync()
        {
            await _server.DisposeAsync();
            _states.Dispose();
        }
    }

    /// <summary>Answers a dispatcher would publish, with their topic and Correlation Data, kept instead.</summary>
    private sealed class TopicPublisher : IResponsePublisher
    {
        public System.Collections.Concurrent.ConcurrentQueue<(string Topic, byte[] Correlation, byte[] Payload)> Answers { get; } = new();

        public Task PublishAsync(string topic, byte[] payload, byte[]? correlationData, bool retain, CancellationToken cancellationToken, string contentType = "application/json")
        {
            Answers.Enqueue((topic, correlationData ?? [], payload));
            return Task.CompletedTask;
        }
    }
}
