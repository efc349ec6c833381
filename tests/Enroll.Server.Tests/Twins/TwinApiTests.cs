using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Protocol.Admin;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;
using Enroll.Protocol.Twins;
using Enroll.Server.Registry;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Twins;

/// <summary>The twin routes of the HTTP API on a running server (real SQLite, real embedded broker).</summary>
public sealed class TwinApiTests(ITestOutputHelper output) : IAsyncLifetime
{
    private TestServer _server = null!;
    private readonly TempDirectory _states = new();
    private int _ids;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(output);

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _states.Dispose();
    }

    private IRegistry Registry => _server.Host.Services.GetRequiredService<IRegistry>();

    /// <summary>A device put straight into the server's registry (organisation and metadata as given).</summary>
    private async Task<string> DeviceAsync(string orgId = "acme", string? metadataJson = null)
    {
        var id = Interlocked.Increment(ref _ids);
        var outcome = await Registry.RegisterDeviceAsync(new RegisterDeviceCommand
        {
            OrgId = orgId,
            ClientId = $"twin-client-{id}",
            NewDeviceId = $"dev-twin-{id:D3}",
            MetadataJson = metadataJson,
            Now = DateTimeOffset.UnixEpoch.AddDays(20_000),
        });
        Assert.Equal(RegisterDeviceResult.Created, outcome.Result);
        return outcome.Device!.DeviceId;
    }

    private static StringContent MergePatch(string json, string mediaType = "application/merge-patch+json") => new(json, Encoding.UTF8, mediaType);

    private Task<HttpResponseMessage> PatchAsync(string deviceId, string json, string? ifMatch = null, string mediaType = "application/merge-patch+json")
    {
        var request = new HttpRequestMessage(HttpMethod.Patch, $"/api/devices/{deviceId}/twin/desired") { Content = MergePatch(json, mediaType) };
        if (ifMatch is not null)
        {
            request.Headers.TryAddWithoutValidation("If-Match", ifMatch);
        }

        return _server.Http.SendAsync(request);
    }

    private static async Task<TwinInfo> TwinOf(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync(TwinAdminJsonContext.Default.TwinInfo))!;
    }

    private static async Task<ApiProblem> ProblemOf(HttpResponseMessage response, HttpStatusCode status)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = (await response.Content.ReadFromJsonAsync(AdminJsonContext.Default.ApiProblem))!;
        Assert.Equal((int)status, problem.Status);
        return problem;
    }

    private static void AssertJson(string expected, JsonNode? actual) =>
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), actual), $"expected {expected}, was {actual?.ToJsonString()}");

    [Fact]
    public async Task GetTwin_OfANewDevice_IsEmptyAtVersionZero_WithETagOfBothVersions()
    {
        var device = await DeviceAsync();

        using var response = await _server.Http.GetAsync($"/api/devices/{device}/twin");

        var twin = await TwinOf(response);
        Assert.Equal("\"d0-r0\"", response.Headers.ETag?.ToString());
        Assert.Equal(device, twin.DeviceId);
        AssertJson("{}", twin.Desired);
        AssertJson("{}", twin.Reported);
        Assert.Equal(0, twin.DesiredVersion);
        Assert.Equal(0, twin.ReportedVersion);
        Assert.Null(twin.UpdatedAt);
    }

    [Fact]
    public async Task GetTwin_WithIfNoneMatchOfTheCurrentETag_Is304_UntilEitherDocumentChanges()
    {
        var device = await DeviceAsync();
        (await PatchAsync(device, """{"a":1}""")).Dispose();

        async Task<HttpResponseMessage> GetIfNoneMatch(string etag)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, $"/api/devices/{device}/twin");
            request.Headers.TryAddWithoutValidation("If-None-Match", etag);
            return await _server.Http.SendAsync(request);
        }

        using var same = await GetIfNoneMatch("\"d1-r0\"");
        using var older = await GetIfNoneMatch("\"d0-r0\"");
        await Registry.PatchReportedAsync(device, new JsonObject { ["up"] = true }, DateTimeOffset.UnixEpoch.AddDays(20_001));
        using var afterReport = await GetIfNoneMatch("\"d1-r0\"");

        Assert.Equal(HttpStatusCode.NotModified, same.StatusCode);
        Assert.Equal("\"d1-r0\"", same.Headers.ETag?.ToString());
        Assert.Empty(await same.Content.ReadAsByteArrayAsync());
        Assert.Equal(1, (await TwinOf(older)).DesiredVersion);
        Assert.Equal("\"d1-r1\"", afterReport.Headers.ETag?.ToString());
        Assert.Equal(1, (await TwinOf(afterReport)).ReportedVersion);
    }

    [Fact]
    public async Task Twin_OfAnUnknownDevice_Is404ForGetAndPatch()
    {
        using var get = await _server.Http.GetAsync("/api/devices/dev-nobody/twin");
        using var patch = await PatchAsync("dev-nobody", """{"a":1}""");

        Assert.Contains("dev-nobody", (await ProblemOf(get, HttpStatusCode.NotFound)).Detail, StringComparison.Ordinal);
        Assert.Contains("dev-nobody", (await ProblemOf(patch, HttpStatusCode.NotFound)).Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PatchDesired_MergesThePatch_AndAnswersTheNewTwinWhoseETagNamesBothVersions()
    {
        var device = await DeviceAsync();

        using var first = await PatchAsync(device, """{"interval":30,"led":{"color":"red","blink":true}}""");
        using var second = await PatchAsync(device, """{"led":{"blink":null}}""", mediaType: "application/json");
        await Registry.PatchReportedAsync(device, new JsonObject { ["firmware"] = "1.2" }, DateTimeOffset.UnixEpoch.AddDays(20_001));
        using var get = await _server.Http.GetAsync($"/api/devices/{device}/twin");

        Assert.Equal(1, (await TwinOf(first)).DesiredVersion);
        Assert.Equal("\"d1-r0\"", first.Headers.ETag?.ToString());
        var patched = await TwinOf(second);
        Assert.Equal(2, patched.DesiredVersion);
        AssertJson("""{"interval":30,"led":{"color":"red"}}""", patched.Desired);
        Assert.Equal("\"d2-r0\"", second.Headers.ETag?.ToString());
        var twin = await TwinOf(get);
        Assert.Equal("\"d2-r1\"", get.Headers.ETag?.ToString());
        AssertJson("""{"firmware":"1.2"}""", twin.Reported);
        Assert.Equal(1, twin.ReportedVersion);
    }

    [Theory]
    [InlineData("\"d1-r0\"")]
    [InlineData("W/\"d1-r0\"")]
    [InlineData("1")]
    [InlineData("\"1\"")]
    public async Task PatchDesired_WithAStaleIfMatch_Is412WithTheCurrentVersion_AndChangesNothing(string stale)
    {
        var device = await DeviceAsync();
        (await PatchAsync(device, """{"a":1}""")).Dispose();
        (await PatchAsync(device, """{"b":2}""")).Dispose();

        using var refused = await PatchAsync(device, """{"a":9}""", ifMatch: stale);
        using var get = await _server.Http.GetAsync($"/api/devices/{device}/twin");

        var problem = await ProblemOf(refused, (HttpStatusCode)412);
        Assert.Contains("is 2, not 1", problem.Detail, StringComparison.Ordinal);
        Assert.Equal("\"d2-r0\"", refused.Headers.ETag?.ToString());
        var twin = await TwinOf(get);
        Assert.Equal(2, twin.DesiredVersion);
        AssertJson("""{"a":1,"b":2}""", twin.Desired);
    }

    [Theory]
    [InlineData("\"d2-r0\"")]
    [InlineData("\"d2-r7\"")]
    [InlineData("2")]
    [InlineData("*")]
    public async Task PatchDesired_WithACurrentIfMatch_IsApplied(string current)
    {
        var device = await DeviceAsync();
        (await PatchAsync(device, """{"a":1}""")).Dispose();
        (await PatchAsync(device, """{"b":2}""")).Dispose();

        using var response = await PatchAsync(device, """{"a":9}""", ifMatch: current);

        var twin = await TwinOf(response);
        Assert.Equal(3, twin.DesiredVersion);
        AssertJson("""{"a":9,"b":2}""", twin.Desired);
    }

    [Fact]
    public async Task PatchDesired_OverTheLimits_Is400WithTheTwinLimitsReason_AndChangesNothing()
    {
        var device = await DeviceAsync();
        var longKey = new string('k', TwinLimits.MaxKeyLength + 1);
        var deep = string.Concat(Enumerable.Repeat("{\"n\":", TwinLimits.MaxDepth + 1)) + "1" + new string('}', TwinLimits.MaxDepth + 1);

        using var tooBig = await PatchAsync(device, JsonSerializer.Serialize(new Dictionary<string, string> { ["blob"] = new string('x', TwinLimits.MaxDocumentBytes) }));
        using var badKey = await PatchAsync(device, $$"""{"{{longKey}}":1}""");
        using var tooDeep = await PatchAsync(device, deep);
        using var get = await _server.Http.GetAsync($"/api/devices/{device}/twin");

        Assert.Contains("bytes", (await ProblemOf(tooBig, HttpStatusCode.BadRequest)).Detail, StringComparison.Ordinal);
        Assert.Equal(TwinLimits.CheckPatch(new JsonObject { [longKey] = 1 }), (await ProblemOf(badKey, HttpStatusCode.BadRequest)).Detail);
        Assert.Contains("deeper", (await ProblemOf(tooDeep, HttpStatusCode.BadRequest)).Detail, StringComparison.Ordinal);
        Assert.Equal(0, (await TwinOf(get)).DesiredVersion);
    }

    [Theory]
    [InlineData("[1,2]", "application/merge-patch+json", HttpStatusCode.BadRequest)]
    [InlineData("\"text\"", "application/json", HttpStatusCode.BadRequest)]
    [InlineData("{not json", "application/json", HttpStatusCode.BadRequest)]
    [InlineData("{\"a\":1}", "text/plain", HttpStatusCode.UnsupportedMediaType)]
    public async Task PatchDesired_ThatIsNotAJsonObjectMergePatch_IsRefused(string body, string mediaType, HttpStatusCode status)
    {
        var device = await DeviceAsync();

        using var response = await PatchAsync(device, body, mediaType: mediaType);

        await ProblemOf(response, status);
    }

    [Theory]
    [InlineData("d-r1")]
    [InlineData("\"five\"")]
    [InlineData("-1")]
    public async Task PatchDesired_WithAnIfMatchThatNamesNoVersion_Is400(string ifMatch)
    {
        var device = await DeviceAsync();

        using var response = await PatchAsync(device, """{"a":1}""", ifMatch: ifMatch);

        Assert.Contains("If-Match", (await ProblemOf(response, HttpStatusCode.BadRequest)).Title, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TwinRoutes_WithoutTheAdminKey_Are401()
    {
        var device = await DeviceAsync();
        using var anonymous = new HttpClient { BaseAddress = _server.HttpEndpoint };

        using var get = await anonymous.GetAsync($"/api/devices/{device}/twin");
        using var patch = await anonymous.PatchAsync($"/api/devices/{device}/twin/desired", MergePatch("""{"a":1}"""));

        Assert.Equal(HttpStatusCode.Unauthorized, get.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, patch.StatusCode);
        Assert.Equal(0, (await Registry.GetTwinAsync(device))!.DesiredVersion);
    }

    private async Task<FleetTwinPatchResult> FleetAsync(string query, string patch)
    {
        using var response = await _server.Http.PatchAsync($"/api/twins/desired?{query}", MergePatch(patch));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync(TwinAdminJsonContext.Default.FleetTwinPatchResult))!;
    }

    [Fact]
    public async Task FleetPatch_FiltersByOrganisationMetadataAndReported_AndReportsHowManyItTouched()
    {
        var berlin = await DeviceAsync(metadataJson: """{"site":"berlin"}""");
        var munich = await DeviceAsync(metadataJson: """{"site":"munich"}""");
        var other = await DeviceAsync(orgId: "globex", metadataJson: """{"site":"berlin"}""");
        await Registry.PatchReportedAsync(munich, new JsonObject { ["firmware"] = "1.2" }, DateTimeOffset.UnixEpoch.AddDays(20_001));

        var all = await FleetAsync("org=acme", """{"wave":1}""");
        var bySite = await FleetAsync("org=acme&where=metadata.site%3Dberlin", """{"site_wave":1}""");
        var byFirmware = await FleetAsync("org=acme&where=reported.firmware=1.2", """{"fw_wave":1}""");
        var byBoth = await FleetAsync("org=acme&where=reported.firmware=1.2&where=metadata.site=berlin", """{"none":1}""");

        Assert.Equal(new FleetTwinPatchResult { Touched = 2 }, all);
        Assert.Equal(new FleetTwinPatchResult { Touched = 1 }, bySite);
        Assert.Equal(new FleetTwinPatchResult { Touched = 1 }, byFirmware);
        Assert.Equal(new FleetTwinPatchResult { Touched = 0 }, byBoth);
        AssertJson("""{"wave":1,"site_wave":1}""", JsonNode.Parse((await Registry.GetTwinAsync(berlin))!.Desired));
        AssertJson("""{"wave":1,"fw_wave":1}""", JsonNode.Parse((await Registry.GetTwinAsync(munich))!.Desired));
        Assert.Equal(0, (await Registry.GetTwinAsync(other))!.DesiredVersion);
    }

    [Fact]
    public async Task FleetPatch_AsAJsonBody_IsTheSameAsTheQueryForm_AndCountsDevicesOverTheLimits()
    {
        var roomy = await DeviceAsync(metadataJson: """{"site":"berlin"}""");
        var full = await DeviceAsync(metadataJson: """{"site":"berlin"}""");
        await Registry.PatchDesiredAsync(full, new JsonObject { ["blob"] = new string('x', TwinLimits.MaxDocumentBytes - 50) }, null, DateTimeOffset.UnixEpoch.AddDays(20_001));
        var body = new JsonObject { ["org"] = "acme", ["where"] = "metadata.site=berlin", ["patch"] = new JsonObject { ["more"] = new string('y', 100) } };

        using var response = await _server.Http.PatchAsync("/api/twins/desired", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var result = (await response.Content.ReadFromJsonAsync(TwinAdminJsonContext.Default.FleetTwinPatchResult))!;
        Assert.Equal(1, result.Touched);
        Assert.Equal(1, result.Refused);
        Assert.Contains("bytes", result.Refusal, StringComparison.Ordinal);
        Assert.Equal(1, (await Registry.GetTwinAsync(roomy))!.DesiredVersion);
        Assert.Equal(1, (await Registry.GetTwinAsync(full))!.DesiredVersion);
    }

    [Theory]
    [InlineData("/api/twins/desired?org=acme&where=site%3Dberlin", """{"a":1}""", "invalid where")]
    [InlineData("/api/twins/desired?org=", """{"a":1}""", "invalid org")]
    [InlineData("/api/twins/desired?org=acme", "[1]", "invalid body")]
    [InlineData("/api/twins/desired", """{"org":"acme","patch":{"a":1},"filter":"x"}""", "invalid body")]
    [InlineData("/api/twins/desired", """{"where":"metadata.a=b","patch":{"a":1}}""", "invalid org")]
    [InlineData("/api/twins/desired", """{"org":"acme"}""", "invalid body")]
    public async Task FleetPatch_WithoutAValidOrganisationConditionOrPatch_Is400AndTouchesNothing(string url, string body, string title)
    {
        var device = await DeviceAsync();

        using var response = await _server.Http.PatchAsync(url, MergePatch(body, "application/json"));

        Assert.Equal(title, (await ProblemOf(response, HttpStatusCode.BadRequest)).Title);
        Assert.Equal(0, (await Registry.GetTwinAsync(device))!.DesiredVersion);
    }

    private async Task<(string DeviceId, string AccessToken)> RegisterAsync(string clientId)
    {
        var token = await _server.CreateTokenAsync(orgId: "push-org");
        await using var device = DeviceHarness.Create(_server.MqttEndpoint, clientId, _states.Combine(clientId), token.Token, output);
        var identity = await device.Registration.StartAsync();
        var stored = await device.Store.LoadAsync();
        return (identity.DeviceId, stored!.AccessToken!);
    }

    private static TwinDesiredPatch Pushed(MQTTnet.MqttApplicationMessage message) =>
        JsonSerializer.Deserialize(RawMqttClient.Text(message), EnrollJsonContext.Default.TwinDesiredPatch)!;

    [Fact]
    public async Task DesiredPatches_ArePushedToTheSubscribedDevice_WithTheirVersions_AtQoS1NotRetained()
    {
        var (deviceId, accessToken) = await RegisterAsync("push-1");
        await using var mqtt = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "push-1", deviceId, accessToken);
        await mqtt.SubscribeAsync(EnrollTopics.DeviceTwinDesired(deviceId));

        (await PatchAsync(deviceId, """{"interval":30}""")).Dispose();
        (await PatchAsync(deviceId, """{"interval":null,"mode":"eco"}""", ifMatch: "\"d1-r0\"")).Dispose();
        _ = await FleetAsync("org=push-org", """{"wave":3}""");

        var messages = new[] { await mqtt.ReceiveAsync(), await mqtt.ReceiveAsync(), await mqtt.ReceiveAsync() };
        Assert.All(messages, m => Assert.Equal(EnrollTopics.DeviceTwinDesired(deviceId), m.Topic));
        Assert.All(messages, m => Assert.False(m.Retain));
        Assert.All(messages, m => Assert.Equal(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce, m.QualityOfServiceLevel));
        var pushed = messages.Select(Pushed).OrderBy(p => p.Version).ToList();
        Assert.Equal([1L, 2, 3], pushed.Select(p => p.Version));
        AssertJson("""{"interval":30}""", pushed[0].Patch);
        AssertJson("""{"interval":null,"mode":"eco"}""", pushed[1].Patch);
        AssertJson("""{"wave":3}""", pushed[2].Patch);
    }

    [Fact]
    public async Task RefusedAndStalePatches_AreNotPushed()
    {
        var (deviceId, accessToken) = await RegisterAsync("push-2");
        await using var mqtt = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "push-2", deviceId, accessToken);
        await mqtt.SubscribeAsync(EnrollTopics.DeviceTwinDesired(deviceId));

        (await PatchAsync(deviceId, """{"a":1}""", ifMatch: "5")).Dispose();
        (await PatchAsync(deviceId, $$"""{"{{new string('k', TwinLimits.MaxKeyLength + 1)}}":1}""")).Dispose();
        (await PatchAsync(deviceId, """{"b":2}""")).Dispose();

        Assert.Equal(1, Pushed(await mqtt.ReceiveAsync()).Version);
        Assert.False(await mqtt.ReceivesWithinAsync(TimeSpan.FromMilliseconds(300)));
    }
}
