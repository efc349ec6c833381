using System.Text;
using System.Text.Json;
using Enroll.Cli.Infrastructure;
using Enroll.Device;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary>
/// <c>enroll device status</c> reads the state folder without changing it and shows the agent's health as the device
/// library writes it; <c>enroll device send --data @FILE</c> sends the file.
/// </summary>
public sealed class DeviceStatusTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _folder = new("enroll-status");

    public void Dispose() => _folder.Dispose();

    private static DeviceHealthSnapshot Snapshot(bool running, params DeviceFault[] faults) => new()
    {
        Pid = Environment.ProcessId,
        UpdatedAt = TimeProvider.System.GetUtcNow(),
        Running = running,
        Faults = faults,
    };

    [Fact]
    public async Task Status_ShowsTheRunningAgentAndEachFault_FromTheHealthFileTheDeviceLibraryWrites()
    {
        var state = _folder.Combine("health");
        Directory.CreateDirectory(state);
        var since = new DateTimeOffset(2026, 12, 1, 10, 0, 0, TimeSpan.Zero);
        DeviceHealthFile.Write(state, Snapshot(true, new DeviceFault(DeviceComponents.Publisher, DeviceFaultKind.MessageRefused, "the server refused message 01abc for good (0x99)", since, 3)));

        var json = await CliRunner.RunAsync("device", "status", "--state", state, "--json");

        using var document = JsonDocument.Parse(json.Out);
        var agent = document.RootElement.GetProperty("agent");
        Assert.True(agent.GetProperty("running").GetBoolean());
        Assert.Equal(Environment.ProcessId, agent.GetProperty("pid").GetInt32());
        Assert.True(agent.TryGetProperty("updated_at", out _));
        var fault = Assert.Single(agent.GetProperty("faults").EnumerateArray());
        Assert.Equal("publisher", fault.GetProperty("component").GetString());
        Assert.Equal("message_refused", fault.GetProperty("kind").GetString());
        Assert.Equal(3, fault.GetProperty("occurrences").GetInt32());
        Assert.Equal("2026-12-01T10:00:00Z", fault.GetProperty("since").GetString());

        var text = await CliRunner.RunAsync("device", "status", "--state", state);
        Assert.Contains($"running (pid {Environment.ProcessId})", text.Out, StringComparison.Ordinal);
        Assert.Contains("publisher: message_refused — the server refused message 01abc for good (0x99) (since 2026-12-01 10:00:00 UTC, 3 times)", text.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_AfterTheAgentStopped_SaysItIsNotRunning()
    {
        var state = _folder.Combine("stopped");
        Directory.CreateDirectory(state);
        DeviceHealthFile.Write(state, Snapshot(false));

        var json = await CliRunner.RunAsync("device", "status", "--state", state, "--json");

        using var document = JsonDocument.Parse(json.Out);
        Assert.False(document.RootElement.GetProperty("agent").GetProperty("running").GetBoolean());
        Assert.Contains("not running (last pid", (await CliRunner.RunAsync("device", "status", "--state", state)).Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_WhileARealAgentRuns_ReadsItsOpenDatabasesAndShowsItRunning()
    {
        await using var server = await TestServer.StartAsync(output);
        var state = _folder.Combine("live");
        var token = await server.CreateTokenAsync();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "status-live", state, token.Token, output);
        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Registration.Status.State), s => s == DeviceState.Registered, TimeSpan.FromSeconds(30), "the agent registered");
        await device.Outbox.SendAsync("telemetry", "{}"u8.ToArray(), new MessageProperties());

        var json = await CliRunner.RunAsync("device", "status", "--state", state, "--json");

        Assert.Equal(0, json.ExitCode);
        using var document = JsonDocument.Parse(json.Out);
        Assert.Equal("registered", document.RootElement.GetProperty("state").GetString());
        Assert.True(document.RootElement.GetProperty("agent").GetProperty("running").GetBoolean());
        Assert.True(document.RootElement.TryGetProperty("outbox", out _));
        Assert.Empty(json.Error);
    }

    [Fact]
    public async Task DeviceRun_OnAStateFolderARunningAgentHolds_IsRefusedNamingItsPid()
    {
        await using var server = await TestServer.StartAsync(output);
        var state = _folder.Combine("held");
        var token = await server.CreateTokenAsync();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "held", state, token.Token, output);
        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => Task.FromResult(DeviceStateReader.ReadHealth(state)?.Running == true), running => running, TimeSpan.FromSeconds(30), "the agent wrote its health file");

        var second = await CliRunner.RunAsync("device", "run", "--broker", server.MqttEndpoint.ToString(), "--client-id", "held", "--state", state).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.True(second.ExitCode == 3, $"exit {second.ExitCode}: {second.Error}");
        var line = Assert.Single(second.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"in use by process {Environment.ProcessId}", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_OfAStoppedDevice_CreatesNoFileInItsStateFolder()
    {
        await using var server = await TestServer.StartAsync(output);
        var state = _folder.Combine("untouched");
        var token = await server.CreateTokenAsync();
        Assert.Equal(0, (await CliRunner.RunAsync("device", "register", "--broker", server.MqttEndpoint.ToString(), "--client-id", "untouched", "--token", token.Token!, "--state", state)).ExitCode);

        // As after the agent stopped: its pooled connections closed, so SQLite removed the write-ahead log files.
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        var before = Directory.GetFiles(state).Order(StringComparer.Ordinal).ToList();
        Assert.DoesNotContain(before, f => f.EndsWith("-shm", StringComparison.Ordinal));

        var status = await CliRunner.RunAsync("device", "status", "--state", state);

        Assert.Equal(0, status.ExitCode);
        Assert.Equal(before, Directory.GetFiles(state).Order(StringComparer.Ordinal).ToList());
    }

    [Fact]
    public async Task Status_OnAGarbageDeviceDb_ReportsItDamaged_AndLeavesTheFolderExactlyAsItWas()
    {
        var state = _folder.Combine("garbage");
        Directory.CreateDirectory(state);
        var garbage = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("not a database; ", 512)));
        await File.WriteAllBytesAsync(Path.Combine(state, "device.db"), garbage);

        var result = await CliRunner.RunAsync("device", "status", "--state", state, "--json");

        Assert.Equal(6, result.ExitCode);
        using var document = JsonDocument.Parse(result.Out);
        Assert.Equal("damaged", document.RootElement.GetProperty("state").GetString());
        Assert.Equal("device.db", document.RootElement.GetProperty("damaged")[0].GetProperty("file").GetString());
        Assert.StartsWith("enroll: ", Assert.Single(result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries)), StringComparison.Ordinal);
        Assert.Equal("device.db", Path.GetFileName(Assert.Single(Directory.GetFiles(state))));
        Assert.Equal(garbage, await File.ReadAllBytesAsync(Path.Combine(state, "device.db")));
    }

    [Fact]
    public async Task Send_WithDataFromAFile_DeliversTheFileExactly_NotAsAResponseFile()
    {
        await using var server = await TestServer.StartAsync(output);
        var state = _folder.Combine("send-file");
        var token = await server.CreateTokenAsync();
        var registered = await CliRunner.RunAsync("device", "register", "--broker", server.MqttEndpoint.ToString(), "--client-id", "send-file", "--token", token.Token!, "--state", state, "--json");
        Assert.Equal(0, registered.ExitCode);
        using var identity = JsonDocument.Parse(registered.Out);
        var payload = "{ \"reading\": 21.5,\n  \"note\": \"two words\", \"tags\": [\"a b\", \"@c\"] }\n";
        var file = _folder.Combine("payload.json");
        await File.WriteAllTextAsync(file, payload);

        var sent = await CliRunner.RunAsync("device", "send", "--broker", server.MqttEndpoint.ToString(), "--state", state, "--stream", "telemetry", "--data", $"@{file}", "--deliver");

        Assert.True(sent.ExitCode == 0, sent.Error);
        var stored = Assert.Single(await server.MessagesAsync(identity.RootElement.GetProperty("device_id").GetString()));
        Assert.Equal(payload, Encoding.UTF8.GetString(stored.Payload.ToArray()));
    }
}
