using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary><c>enroll twin show|set</c> against a running server with registered devices.</summary>
public sealed class TwinCommandTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDirectory _folder = new();
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(output);

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _folder.Dispose();
    }

    private string[] Admin => ["--server", _server.HttpEndpoint.ToString(), "--admin-key", _server.AdminKey];

    private async Task<(int ExitCode, string Out, string Error)> Enroll(params string[] args)
    {
        var result = await CliRunner.RunAsync([.. args, .. Admin]);
        output.WriteLine($"$ enroll {string.Join(' ', args)}\nexit {result.ExitCode}\nstdout: {result.Out}\nstderr: {result.Error}");
        return result;
    }

    private async Task<(string DeviceId, string AccessToken)> RegisterAsync(string clientId, string orgId)
    {
        var token = await _server.CreateTokenAsync(orgId: orgId);
        await using var device = DeviceHarness.Create(_server.MqttEndpoint, clientId, _folder.Combine(clientId), token.Token, output);
        var identity = await device.Registration.StartAsync();
        var stored = await device.Store.LoadAsync();
        return (identity.DeviceId, stored!.AccessToken!);
    }

    /// <summary>Reports <paramref name="patch"/> as the device does, over MQTT (twin/report), and waits for the acknowledgement.</summary>
    private async Task ReportAsync((string DeviceId, string AccessToken) device, string clientId, string patch)
    {
        await using var mqtt = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, clientId, device.DeviceId, device.AccessToken);
        await mqtt.SubscribeAsync(EnrollTopics.DeviceResponses(device.DeviceId));
        await mqtt.PublishAsync(
            EnrollRequests.TwinReport.TopicFor(device.DeviceId),
            $$"""{"request_id":"r-1","patch":{{patch}}}""",
            EnrollTopics.DeviceResponses(device.DeviceId),
            [1, 2, 3]);
        var answer = JsonNode.Parse(RawMqttClient.Text(await mqtt.ReceiveAsync()))!;
        Assert.Equal(1, answer["reported_version"]!.GetValue<long>());
    }

    private static JsonElement Json(string text) => JsonDocument.Parse(text).RootElement;

    [Fact]
    public async Task TwinShow_OfANewDevice_PrintsEmptyDocumentsAtVersionZero_AsTextAndJson()
    {
        var (deviceId, _) = await RegisterAsync("show-1", "twin-show");

        var text = await Enroll("twin", "show", deviceId);
        var json = await Enroll("twin", "show", deviceId, "--json");

        Assert.Equal(0, text.ExitCode);
        Assert.Contains($"Device ID:         {deviceId}", text.Out, StringComparison.Ordinal);
        Assert.Contains("Desired version:   0", text.Out, StringComparison.Ordinal);
        Assert.Contains("Updated:           never", text.Out, StringComparison.Ordinal);
        Assert.Equal(0, json.ExitCode);
        var twin = Json(json.Out);
        Assert.Equal(deviceId, twin.GetProperty("device_id").GetString());
        Assert.Equal(0, twin.GetProperty("desired_version").GetInt64());
        Assert.Equal(JsonValueKind.Object, twin.GetProperty("desired").ValueKind);
        Assert.Equal(0, twin.GetProperty("reported_version").GetInt64());
    }

    [Fact]
    public async Task TwinSet_OneDevice_MergesThePatchAndPrintsTheNewTwin_AStaleIfVersionExits3AndChangesNothing()
    {
        var (deviceId, _) = await RegisterAsync("set-1", "twin-set");
        var file = _folder.Combine("patch.json");
        await File.WriteAllTextAsync(file, """{"mode":"eco"}""");

        var first = await Enroll("twin", "set", deviceId, "--desired", """{"interval":30,"led":"red"}""");
        var second = await Enroll("twin", "set", deviceId, "--desired", """{"led":null}""", "--if-version", "1", "--json");
        var fromFile = await Enroll("twin", "set", deviceId, "--desired", "@" + file);
        var stale = await Enroll("twin", "set", deviceId, "--desired", """{"interval":5}""", "--if-version", "1");
        var shown = await Enroll("twin", "show", deviceId, "--json");

        Assert.Equal(0, first.ExitCode);
        Assert.Contains("Desired version:   1", first.Out, StringComparison.Ordinal);
        Assert.Contains("\"interval\": 30", first.Out, StringComparison.Ordinal);
        Assert.Equal(0, second.ExitCode);
        Assert.Equal(2, Json(second.Out).GetProperty("desired_version").GetInt64());
        Assert.Equal(0, fromFile.ExitCode);
        Assert.Equal(3, stale.ExitCode);
        var line = Assert.Single(stale.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("enroll: 412", line, StringComparison.Ordinal);
        Assert.Contains("is 3, not 1", line, StringComparison.Ordinal);
        var twin = Json(shown.Out);
        Assert.Equal(3, twin.GetProperty("desired_version").GetInt64());
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"interval":30,"mode":"eco"}"""), JsonNode.Parse(twin.GetProperty("desired").GetRawText())));
    }

    [Fact]
    public async Task TwinSet_ForAFleet_PatchesTheMatchingDevicesOfTheOrganisation_AndPrintsHowManyItTouched()
    {
        var old = await RegisterAsync("fleet-old", "twin-fleet");
        var current = await RegisterAsync("fleet-new", "twin-fleet");
        var elsewhere = await RegisterAsync("fleet-other", "twin-elsewhere");
        await ReportAsync(old, "fleet-old", """{"firmware":"1.2"}""");
        await ReportAsync(current, "fleet-new", """{"firmware":"1.3"}""");

        var all = await Enroll("twin", "set", "--org", "twin-fleet", "--desired", """{"wave":1}""");
        var byFirmware = await Enroll("twin", "set", "--org", "twin-fleet", "--where", "reported.firmware=1.2", "--desired", """{"upgrade":"1.3"}""", "--json");
        var byBoth = await Enroll(
            "twin", "set", "--org", "twin-fleet", "--where", $"metadata.cpu_count={Environment.ProcessorCount}", "--where", "reported.firmware=1.3", "--desired", """{"ok":true}""");
        var none = await Enroll("twin", "set", "--org", "twin-fleet", "--where", "reported.firmware=9", "--desired", """{"x":1}""");

        Assert.Equal(0, all.ExitCode);
        Assert.Equal("Patched the desired twin of 2 devices of twin-fleet.", all.Out.Trim());
        Assert.Equal(0, byFirmware.ExitCode);
        Assert.Equal(1, Json(byFirmware.Out).GetProperty("touched").GetInt32());
        Assert.Equal(0, Json(byFirmware.Out).GetProperty("refused").GetInt32());
        Assert.Equal($"Patched the desired twin of 1 device of twin-fleet where metadata.cpu_count={Environment.ProcessorCount} and reported.firmware=1.3.", byBoth.Out.Trim());
        Assert.Contains("of 0 devices", none.Out, StringComparison.Ordinal);
        var oldTwin = Json((await Enroll("twin", "show", old.DeviceId, "--json")).Out);
        Assert.Equal(2, oldTwin.GetProperty("desired_version").GetInt64());
        var currentTwin = Json((await Enroll("twin", "show", current.DeviceId, "--json")).Out);
        Assert.Equal(2, currentTwin.GetProperty("desired_version").GetInt64());
        Assert.True(currentTwin.GetProperty("desired").GetProperty("ok").GetBoolean());
        Assert.Equal(0, Json((await Enroll("twin", "show", elsewhere.DeviceId, "--json")).Out).GetProperty("desired_version").GetInt64());
    }

    [Theory]
    [InlineData(new[] { "twin", "set", "--desired", "{}" }, "DEVICE or --org")]
    [InlineData(new[] { "twin", "set", "dev-x", "--org", "o", "--desired", "{}" }, "DEVICE or --org")]
    [InlineData(new[] { "twin", "set", "dev-x", "--where", "reported.a=1", "--desired", "{}" }, "--where")]
    [InlineData(new[] { "twin", "set", "--org", "o", "--if-version", "1", "--desired", "{}" }, "--if-version")]
    [InlineData(new[] { "twin", "set", "dev-x", "--desired", "[1]" }, "JSON object")]
    [InlineData(new[] { "twin", "set", "dev-x", "--desired", "{nope" }, "not JSON")]
    [InlineData(new[] { "twin", "set", "--org", "o", "--where", "site=berlin", "--desired", "{}" }, "metadata.NAME or reported.NAME")]
    public async Task TwinSet_WithArgumentsThatDoNotMakeOnePatch_IsAUsageErrorOfOneLine(string[] args, string says)
    {
        var result = await Enroll(args);

        Assert.Equal(2, result.ExitCode);
        var line = Assert.Single(result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("enroll: ", line, StringComparison.Ordinal);
        Assert.Contains(says, line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Twin_OfAnUnknownDevice_ExitsRefused_AndAPatchOverTheLimitsIsAUsageError()
    {
        var (deviceId, _) = await RegisterAsync("limits-1", "twin-limits");

        var unknown = await Enroll("twin", "show", "dev-nobody");
        var tooBig = await Enroll("twin", "set", deviceId, "--desired", JsonSerializer.Serialize(new Dictionary<string, string> { ["blob"] = new string('x', 40_000) }));

        Assert.Equal(3, unknown.ExitCode);
        Assert.Contains("no device 'dev-nobody'", unknown.Error, StringComparison.Ordinal);
        Assert.Equal(2, tooBig.ExitCode);
        Assert.Contains("bytes", tooBig.Error, StringComparison.Ordinal);
    }
}
