using System.Net;
using System.Net.Sockets;
using System.Text;
using Enroll.Testing;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Fuzzing;

/// <summary>
/// The embedded broker at the packet level: random and mutated MQTT packets, announced sizes far beyond the limit, and
/// packets no client may send. The server must stay up, keep its memory bounded, and keep serving other clients.
/// </summary>
public sealed class BrokerPacketFuzzTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(2);
    private TestServer _server = null!;
    private readonly TempDirectory _states = new();

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(output, o => o.ConnectTimeout = ConnectTimeout);

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _states.Dispose();
    }

    [Theory]
    [InlineData("before CONNECT")]
    [InlineData("after CONNECT")]
    public async Task MaximumRemainingLength_FollowedByAStall_IsCutOff_WithoutAllocatingTheBody(string when)
    {
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var connections = new List<Task<bool>>();
        for (var i = 0; i < 20; i++)
        {
            var prefix = when == "after CONNECT" ? Packets.Connect($"stall-{i}") : [];
            // A PUBLISH (or CONNECT) announcing 268,435,455 bytes, then nothing more.
            byte[] header = when == "after CONNECT" ? [0x30, 0xFF, 0xFF, 0xFF, 0x7F] : [0x10, 0xFF, 0xFF, 0xFF, 0x7F];
            connections.Add(SendAndWaitForCloseAsync([.. prefix, .. header], halfClose: false, TimeSpan.FromSeconds(5)));
        }

        var closed = await Task.WhenAll(connections);
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;

        Assert.All(closed, Assert.True);
        // 20 bodies of 256 MiB would be 5 GiB; the guard closes each connection at the header.
        Assert.True(allocated < 64L * 1024 * 1024, $"allocated {allocated:N0} bytes");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task AClientThatNeverSendsConnect_IsDroppedAfterTheConnectTimeout()
    {
        var closed = await SendAndWaitForCloseAsync([], halfClose: false, ConnectTimeout + TimeSpan.FromSeconds(5));

        Assert.True(closed);
    }

    [Fact]
    public async Task ARemainingLengthOfFiveBytes_IsRefused()
    {
        Assert.True(await SendAndWaitForCloseAsync([0x10, 0x80, 0x80, 0x80, 0x80, 0x01], halfClose: false, TimeSpan.FromSeconds(5)));
        await AssertStillServingAsync();
    }

    [Theory]
    [InlineData("connack first")]
    [InlineData("connack after connect")]
    [InlineData("empty topic")]
    [InlineData("wildcard topic")]
    [InlineData("invalid utf-8 topic")]
    [InlineData("reserved packet type")]
    public async Task PacketsNoClientMaySend_CloseTheConnectionOrAreRefused_AndDeliverNothing(string kind)
    {
        await using var watcher = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "watcher");
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await watcher.SubscribeAsync("enroll/v1/clients/watcher/#"));
        var connect = Packets.Connect("offender");
        byte[] bytes = kind switch
        {
            "connack first" => Packets.Connack,
            "connack after connect" => [.. connect, .. Packets.Connack],
            "empty topic" => [.. connect, .. Packets.Publish(Array.Empty<byte>(), 1, "x"u8.ToArray())],
            "wildcard topic" => [.. connect, .. Packets.Publish("enroll/v1/clients/+/responses"u8.ToArray(), 1, "x"u8.ToArray())],
            "invalid utf-8 topic" => [.. connect, .. Packets.Publish([0x65, 0xFF, 0xFE, 0x2F, 0xC0, 0x80], 1, "x"u8.ToArray())],
            "reserved packet type" => [.. connect, 0x00, 0x00],
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };

        var (closed, answer) = await SendAndReadAsync(bytes, TimeSpan.FromSeconds(5));

        // Either the broker hung up, or it answered the PUBLISH with an error reason code (>= 0x80) in its PUBACK.
        var pubAck = FindPubAck(answer);
        Assert.True(closed || pubAck is >= 0x80, $"{kind}: closed={closed}, answer={Convert.ToHexString(answer)}");
        Assert.False(await watcher.ReceivesWithinAsync(TimeSpan.FromMilliseconds(300)));
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task RandomAndMutatedPackets_LeaveTheServerUp_WithBoundedMemory_ServingOthers()
    {
        const int Iterations = 600;
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        byte[][] valid =
        [
            Packets.Connect("fuzz"),
            [.. Packets.Connect("fuzz"), .. Packets.Subscribe("enroll/v1/clients/fuzz/#")],
            [.. Packets.Connect("fuzz"), .. Packets.Publish("enroll/v1/register"u8.ToArray(), 1, """{"client_id":"fuzz"}"""u8.ToArray())],
            [.. Packets.Connect("fuzz"), .. Packets.Publish("enroll/v1/devices/dev_x/messages/telemetry"u8.ToArray(), 1, "{}"u8.ToArray()), 0xC0, 0x00, 0xE0, 0x00],
        ];

        // A device keeps working next to the fuzzer: it must be served throughout.
        await using var bystander = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "bystander");
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await bystander.SubscribeAsync("enroll/v1/clients/bystander/#"));
        var before = GC.GetTotalMemory(forceFullCollection: true);

        var cases = Enumerable.Range(0, Iterations).Select(i => i % 2 == 0 ? RandomBytes(random) : Mutate(random, valid[random.Next(valid.Length)])).ToList();
        var hung = 0;
        await Parallel.ForEachAsync(cases, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (bytes, _) =>
        {
            if (!await SendAndWaitForCloseAsync(bytes, halfClose: true, TimeSpan.FromSeconds(10)))
            {
                Interlocked.Increment(ref hung);
            }
        });

        var after = GC.GetTotalMemory(forceFullCollection: true);
        output.WriteLine($"managed heap before {before:N0}, after {after:N0}");
        Assert.Equal(0, hung);
        Assert.True(after - before < 64L * 1024 * 1024, $"heap grew by {after - before:N0} bytes");
        Assert.True(bystander.Client.IsConnected);
        Assert.True((await bystander.PublishAsync("enroll/v1/clients/bystander/echo", "still here")).IsSuccess);
        await AssertStillServingAsync();
    }

    private async Task AssertStillServingAsync()
    {
        var token = await _server.CreateTokenAsync();
        var clientId = $"after-{Guid.NewGuid():N}"[..20];
        await using var device = DeviceHarness.Create(_server.MqttEndpoint, clientId, _states.Combine(clientId), token.Token, output);
        var identity = await device.Registration.StartAsync();
        Assert.StartsWith("dev_", identity.DeviceId, StringComparison.Ordinal);
    }

    private static byte[] RandomBytes(Random random)
    {
        var bytes = new byte[random.Next(1, 512)];
        random.NextBytes(bytes);
        return bytes;
    }

    private static byte[] Mutate(Random random, byte[] packet)
    {
        var bytes = packet.ToList();
        var edits = random.Next(1, 6);
        for (var i = 0; i < edits && bytes.Count > 0; i++)
        {
            var at = random.Next(bytes.Count);
            switch (random.Next(4))
            {
                case 0:
                    bytes[at] = (byte)random.Next(256);
                    break;
                case 1:
                    bytes[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 2:
                    bytes.Insert(at, (byte)random.Next(256));
                    break;
                default:
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
            }
        }

        return [.. bytes];
    }

    private async Task<bool> SendAndWaitForCloseAsync(byte[] bytes, bool halfClose, TimeSpan within)
    {
        var (closed, _) = await SendAndReadAsync(bytes, within, halfClose);
        return closed;
    }

    /// <summary>Sends raw bytes and reads until the server closes the connection (true) or the time is up (false).</summary>
    private async Task<(bool Closed, byte[] Received)> SendAndReadAsync(byte[] bytes, TimeSpan within, bool halfClose = false)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, _server.MqttPort);
        var stream = client.GetStream();
        var received = new MemoryStream();
        using var deadline = new CancellationTokenSource(within);
        try
        {
            if (bytes.Length > 0)
            {
                await stream.WriteAsync(bytes, deadline.Token);
            }

            if (halfClose)
            {
                client.Client.Shutdown(SocketShutdown.Send);
            }

            var buffer = new byte[4096];
            while (true)
            {
                var read = await stream.ReadAsync(buffer, deadline.Token);
                if (read == 0)
                {
                    return (true, received.ToArray());
                }

                received.Write(buffer, 0, read);
            }
        }
        catch (OperationCanceledException)
        {
            return (false, received.ToArray());
        }
        catch (IOException)
        {
            // Reset by the server: closed as well.
            return (true, received.ToArray());
        }
    }

    /// <summary>The reason code of the first PUBACK in <paramref name="answer"/>, if any.</summary>
    private static int? FindPubAck(byte[] answer)
    {
        var i = 0;
        while (i + 1 < answer.Length)
        {
            var type = answer[i] >> 4;
            var length = answer[i + 1];
            if (type == 4)
            {
                return length >= 3 && i + 4 < answer.Length ? answer[i + 4] : 0;
            }

            i += 2 + length;
        }

        return null;
    }

    /// <summary>Hand-built MQTT 5 packets, so the tests can send exactly the bytes they mean.</summary>
    private static class Packets
    {
        public static readonly byte[] Connack = [0x20, 0x03, 0x00, 0x00, 0x00];

        public static byte[] Connect(string clientId)
        {
            var body = new List<byte> { 0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x05, 0x02, 0x00, 0x1E, 0x00 };
            body.AddRange(Text(Encoding.UTF8.GetBytes(clientId)));
            return Frame(0x10, body);
        }

        public static byte[] Publish(byte[] topic, ushort packetId, byte[] payload)
        {
            var body = new List<byte>(Text(topic)) { (byte)(packetId >> 8), (byte)packetId, 0x00 };
            body.AddRange(payload);
            return Frame(0x32, body);
        }

        public static byte[] Subscribe(string filter)
        {
            var body = new List<byte> { 0x00, 0x01, 0x00 };
            body.AddRange(Text(Encoding.UTF8.GetBytes(filter)));
            body.Add(0x01);
            return Frame(0x82, body);
        }

        private static byte[] Text(byte[] value) => [(byte)(value.Length >> 8), (byte)value.Length, .. value];

        private static byte[] Frame(byte header, List<byte> body)
        {
            var frame = new List<byte> { header };
            var length = body.Count;
            do
            {
                var digit = (byte)(length % 128);
                length /= 128;
                frame.Add(length > 0 ? (byte)(digit | 0x80) : digit);
            }
            while (length > 0);
            frame.AddRange(body);
            return [.. frame];
        }
    }
}
