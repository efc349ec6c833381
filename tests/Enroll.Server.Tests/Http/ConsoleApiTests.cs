using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Enroll.Device;
using Enroll.Protocol.Admin;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Http;

/// <summary>The console API against a real server: live events (SSE) and bulk decisions.</summary>
public sealed class ConsoleApiTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan EventPatience = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Events_StartWithResync_ThenShowAnOperationCreatedAndDecided()
    {
        await using var server = await TestServer.StartAsync(output, o => o.PendingPollInterval = TimeSpan.FromHours(1));
        var token = await server.CreateTokenAsync(autoApprove: false);
        await using var events = await EventStream.OpenAsync(server);
        Assert.Equal("resync", (await events.NextAsync(EventPatience)).Kind);

        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "gw-sse", state.Path, token.Token, output);
        var start = device.Registration.StartAsync();
        var created = await events.NextAsync(EventPatience, e => e.Kind == "operation");
        Assert.Equal("pending", created.Operation!.Status);
        Assert.Equal("gw-sse", created.Operation.ClientId);

        await server.ApproveAsync(created.Operation.OperationId);
        var decided = await events.NextAsync(EventPatience, e => e.Kind == "operation" && e.Operation!.Status != "pending");
        Assert.Equal("approved", decided.Operation!.Status);
        Assert.Equal(created.Operation.OperationId, decided.Operation.OperationId);
        var identity = await start.WaitAsync(Patience);
        var registered = await events.NextAsync(EventPatience, e => e.Kind == "device");
        Assert.Equal(identity.DeviceId, registered.DeviceId);
    }

    [Fact]
    public async Task Events_ShowACommandsStateChanges()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync();
        using var state = new TempDirectory();
        // The device registers but runs no agents: its command stays queued until canceled.
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "gw-cmd", state.Path, token.Token, output);
        var identity = await device.Registration.StartAsync().WaitAsync(Patience);
        await using var events = await EventStream.OpenAsync(server);
        await events.NextAsync(EventPatience, e => e.Kind == "resync");

        using var sent = await server.Http.PostAsJsonAsync($"/api/devices/{identity.DeviceId}/commands", new SendCommandRequest { Name = "reboot" }, CommandJsonContext.Default.SendCommandRequest);
        Assert.True(sent.IsSuccessStatusCode, await sent.Content.ReadAsStringAsync());
        var command = (await sent.Content.ReadFromJsonAsync(CommandJsonContext.Default.CommandInfo))!;
        var queued = await events.NextAsync(EventPatience, e => e.Kind == "command");
        Assert.Equal(command.CommandId, queued.Command!.CommandId);
        Assert.Equal(identity.DeviceId, queued.DeviceId);

        using var cancel = await server.Http.PostAsync($"/api/commands/{command.CommandId}/cancel", null);
        Assert.True(cancel.IsSuccessStatusCode, await cancel.Content.ReadAsStringAsync());
        var canceled = await events.NextAsync(EventPatience, e => e.Kind == "command" && e.Command!.State == "canceled");
        Assert.Equal(command.CommandId, canceled.Command!.CommandId);
    }

    [Fact]
    public async Task Events_BeyondTheStreamLimit_AreRefusedWith503()
    {
        await using var server = await TestServer.StartAsync(output, o => o.MaxEventStreams = 1);
        await using var first = await EventStream.OpenAsync(server);
        await first.NextAsync(EventPatience, e => e.Kind == "resync");

        using var second = await server.Http.GetAsync("/api/events", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, second.StatusCode);
        Assert.Contains("at most 1 event streams", await second.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bulk_DryRunCounts_ThenApprovesThreeOfFiveByMetadata_AndThoseDevicesRegister()
    {
        await using var server = await TestServer.StartAsync(output, o => o.PendingPollInterval = TimeSpan.FromHours(1));
        var token = await server.CreateTokenAsync(autoApprove: false);
        List<TempDirectory> folders = [];
        List<DeviceHarness> devices = [];
        List<Task<DeviceIdentity>> starts = [];
        try
        {
            for (var i = 0; i < 5; i++)
            {
                var site = i < 3 ? "north" : "south";
                var folder = new TempDirectory();
                folders.Add(folder);
                var device = DeviceHarness.Create(server.MqttEndpoint, $"gw-bulk-{i}", folder.Path, token.Token, output, replace: s => s.AddSingleton<IDeviceInfoProvider>(new SiteInfo(site)));
                devices.Add(device);
                starts.Add(device.Registration.StartAsync());
                await device.Registration.WaitForStatusAsync(s => s.State == DeviceState.Pending, Patience);
            }

            var filter = new OperationFilter { OrgId = token.OrgId, Metadata = new() { ["site"] = "north" } };
            var dry = await BulkAsync(server, new BulkDecisionRequest { Action = "approve", Filter = filter, DryRun = true });
            Assert.Equal(3, dry.Matched);
            Assert.Equal(0, dry.Decided);
            Assert.Equal(5, (await server.ListOperationsAsync("pending")).Count);

            var listed = await server.Http.GetFromJsonAsync("/api/provisioning-operations?status=pending&meta.site=south", AdminJsonContext.Default.ItemListProvisioningOperationInfo);
            Assert.Equal(2, listed!.Items.Count);

            var done = await BulkAsync(server, new BulkDecisionRequest { Action = "approve", Filter = filter });
            Assert.Equal(3, done.Matched);
            Assert.Equal(3, done.Decided);
            for (var i = 0; i < 3; i++)
            {
                await starts[i].WaitAsync(Patience);
            }

            Assert.All(starts.Skip(3), s => Assert.False(s.IsCompleted));
            Assert.Equal(2, (await server.ListOperationsAsync("pending")).Count);

            var again = await BulkAsync(server, new BulkDecisionRequest { Action = "reject", Filter = filter with { Metadata = new() { ["site"] = "south" } }, Reason = "wrong site" });
            Assert.Equal(2, again.Decided);
            foreach (var start in starts.Skip(3))
            {
                await Assert.ThrowsAsync<EnrollServerException>(() => start.WaitAsync(Patience));
            }
        }
        finally
        {
            foreach (var device in devices)
            {
                await device.DisposeAsync();
            }

            folders.ForEach(f => f.Dispose());
        }
    }

    [Fact]
    public async Task Bulk_WithoutAFilter_IsRefused()
    {
        await using var server = await TestServer.StartAsync(output);
        using var response = await server.Http.PostAsJsonAsync("/api/provisioning-operations/bulk", new BulkDecisionRequest { Action = "approve", Filter = new OperationFilter() }, ConsoleJsonContext.Default.BulkDecisionRequest);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("never covers every operation", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    private static async Task<BulkDecisionResult> BulkAsync(TestServer server, BulkDecisionRequest request)
    {
        using var response = await server.Http.PostAsJsonAsync("/api/provisioning-operations/bulk", request, ConsoleJsonContext.Default.BulkDecisionRequest);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonSerializer.Deserialize(body, ConsoleJsonContext.Default.BulkDecisionResult)!;
    }

    private sealed class SiteInfo(string site) : IDeviceInfoProvider
    {
        public ValueTask<IReadOnlyDictionary<string, JsonElement>> GetMetadataAsync(CancellationToken cancellationToken = default) =>
            ValueTask.FromResult<IReadOnlyDictionary<string, JsonElement>>(new Dictionary<string, JsonElement> { ["site"] = JsonSerializer.SerializeToElement(site) });
    }

    /// <summary>A client of <c>GET /api/events</c>: reads events (skipping heartbeats) one at a time.</summary>
    private sealed class EventStream : IAsyncDisposable
    {
        private readonly HttpResponseMessage _response;
        private readonly StreamReader _reader;

        private EventStream(HttpResponseMessage response, StreamReader reader)
        {
            _response = response;
            _reader = reader;
        }

        public static async Task<EventStream> OpenAsync(TestServer server)
        {
            var response = await server.Http.GetAsync("/api/events", HttpCompletionOption.ResponseHeadersRead);
            response.EnsureSuccessStatusCode();
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            return new EventStream(response, new StreamReader(await response.Content.ReadAsStreamAsync()));
        }

        public async Task<ServerEvent> NextAsync(TimeSpan within, Func<ServerEvent, bool>? wanted = null)
        {
            using var timeout = new CancellationTokenSource(within);
            for (var read = 0; read < 1000; read++)
            {
                string? kind = null, data = null;
                while (await _reader.ReadLineAsync(timeout.Token) is { } line)
                {
                    if (line.Length == 0 && data is not null)
                    {
                        break;
                    }

                    if (line.StartsWith("event: ", StringComparison.Ordinal))
                    {
                        kind = line[7..];
                    }
                    else if (line.StartsWith("data: ", StringComparison.Ordinal))
                    {
                        data = line[6..];
                    }
                }

                Assert.NotNull(data);
                var shown = JsonSerializer.Deserialize(data, ConsoleJsonContext.Default.ServerEvent)!;
                Assert.Equal(kind, shown.Kind);
                if (wanted is null || wanted(shown))
                {
                    return shown;
                }
            }

            throw new InvalidOperationException("no wanted event among 1000");
        }

        public ValueTask DisposeAsync()
        {
            _reader.Dispose();
            _response.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
