using System.Text.Json;
using System.Text.RegularExpressions;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Docs;

/// <summary>
/// Runs the examples of docs/protocol.md exactly as written — Debian's real mosquitto_rr and mosquitto_sub against a
/// real server — substituting only the port and the values the reader would copy from earlier answers.
/// </summary>
public sealed partial class ProtocolDocExamplesTests(ITestOutputHelper output)
{
    [Fact]
    public async Task EveryExampleInTheProtocolDoc_RunsAsWrittenAgainstAServer()
    {
        ExternalTools.Require("mosquitto_rr", "mosquitto-clients");
        var examples = Examples(await File.ReadAllTextAsync(MosquittoBroker.RepositoryFile("docs/protocol.md")));
        await using var server = await TestServer.StartAsync(output);
        var ran = new HashSet<string>(StringComparer.Ordinal);
        var env = new Dictionary<string, string>
        {
            ["TOKEN"] = (await server.CreateTokenAsync("demo", autoApprove: true)).Token!,
            ["APPROVAL_TOKEN"] = (await server.CreateTokenAsync("demo", autoApprove: false)).Token!,
        };

        using (var registered = await RunJsonAsync("register"))
        {
            env["DEVICE_ID"] = registered.RootElement.GetProperty("device_id").GetString()!;
            env["ACCESS_TOKEN"] = registered.RootElement.GetProperty("jwt_token").GetString()!;
            env["REGISTRATION_TOKEN"] = registered.RootElement.GetProperty("registration_token").GetString()!;
        }

        using (var again = await RunJsonAsync("register-again"))
        {
            Assert.Equal(env["DEVICE_ID"], again.RootElement.GetProperty("device_id").GetString());
        }

        using (var legacy = await RunJsonAsync("register-mqtt311"))
        {
            Assert.Equal("req-0001", legacy.RootElement.GetProperty("request_id").GetString());
            Assert.StartsWith("dev_", legacy.RootElement.GetProperty("device_id").GetString(), StringComparison.Ordinal);
            env["OTHER_DEVICE_ID"] = legacy.RootElement.GetProperty("device_id").GetString()!;
        }

        using (var malformed = await RunJsonAsync("register-malformed"))
        {
            Assert.Equal("invalid_request", malformed.RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        using (var init = await RunJsonAsync("provisioning-init"))
        {
            Assert.Equal("pending", init.RootElement.GetProperty("status").GetString());
            env["OPERATION_ID"] = init.RootElement.GetProperty("operation_id").GetString()!;
        }

        await server.ApproveAsync(env["OPERATION_ID"]);
        using (var complete = await RunJsonAsync("provisioning-complete"))
        {
            Assert.Equal("approved", complete.RootElement.GetProperty("status").GetString());
            Assert.Equal("plant-7-gateway", complete.RootElement.GetProperty("device_id").GetString());
            Assert.StartsWith("eyJ", complete.RootElement.GetProperty("registration_token").GetString(), StringComparison.Ordinal);
        }

        using (var refreshed = await RunJsonAsync("refresh"))
        {
            Assert.NotEqual(env["REGISTRATION_TOKEN"], refreshed.RootElement.GetProperty("registration_token").GetString());
        }

        var connected = await RunAsync("connect-as-device");
        Assert.DoesNotContain("Connection Refused", connected.StandardError, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Error", connected.StandardError, StringComparison.Ordinal);

        var sent = await RunAsync("send-message");
        Assert.True(sent.ExitCode == 0, $"send-message failed: {sent}");
        var stored = Assert.Single(await server.MessagesAsync(env["DEVICE_ID"]));
        Assert.Equal("m-000001", stored.MessageId);
        Assert.Equal("telemetry", stored.Stream);
        Assert.Equal("application/json", stored.ContentType);
        Assert.Equal("""{"temperature":21.5,"humidity":40.2}""", System.Text.Encoding.UTF8.GetString(stored.Payload.Span));

        var uploaded = await RunAsync("send-file");
        Assert.True(uploaded.ExitCode == 0, $"send-file failed: {uploaded}");
        Assert.DoesNotContain("Warning", uploaded.StandardError, StringComparison.Ordinal);
        var file = Assert.Single(Directory.GetFiles(Path.Combine(server.DataDirectory, "files", "stored", env["DEVICE_ID"])));
        Assert.Equal(System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(1, 400).Select(i => $"{i}\n"))), await File.ReadAllBytesAsync(file));
        using (var status = await RunJsonAsync("transfer-status"))
        {
            Assert.Equal("complete", status.RootElement.GetProperty("state").GetString());
            Assert.Equal("[[0,1]]", status.RootElement.GetProperty("received").GetRawText());
            Assert.StartsWith("file_", status.RootElement.GetProperty("file_id").GetString(), StringComparison.Ordinal);
        }

        using (var keys = await RunJsonAsync("server-keys"))
        {
            Assert.Contains(keys.RootElement.GetProperty("keys").EnumerateArray(), k => k.GetProperty("use").GetString() == "sig");
        }

        const string reported = """{"firmware":"1.4.2","led":"off","sensors":{"temperature":true}}""";
        using (var report = await RunJsonAsync("twin-report"))
        {
            Assert.Equal(1, report.RootElement.GetProperty("reported_version").GetInt64());
        }

        using (var refused = await RunJsonAsync("twin-report-refused"))
        {
            var error = refused.RootElement.GetProperty("error");
            Assert.Equal("invalid_request", error.GetProperty("code").GetString());
            Assert.Contains("'/network.ip': a member name must not contain '$' or '.'", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        Assert.Equal(("{}", 0L, reported, 1L), await server.TwinInStoreAsync(env["DEVICE_ID"]));
        Assert.Equal(1, await server.PatchDesiredInStoreAsync(env["DEVICE_ID"], """{"led":"on","interval_s":30}"""));
        Assert.Equal(2, await server.PatchDesiredInStoreAsync(env["DEVICE_ID"], """{"interval_s":10}"""));
        using (var twin = await RunJsonAsync("twin-get"))
        {
            Assert.Equal(
                """{"desired_version":2,"patches":[{"version":1,"patch":{"led":"on","interval_s":30}},{"version":2,"patch":{"interval_s":10}}],"reported_version":1,"reported":""" + reported + "}",
                twin.RootElement.GetRawText());
        }

        // A push reaches the device subscribed at the time: the example runs while the operator acts.
        var pushed = RunAsync("twin-desired");
        await server.WaitForSubscriptionAsync("sensor-1", $"enroll/v1/devices/{env["DEVICE_ID"]}/twin/desired", TimeSpan.FromSeconds(15));
        using (var patch = new StringContent("""{"led":"off"}""", System.Text.Encoding.UTF8, "application/merge-patch+json"))
        using (var patched = await server.Http.PatchAsync(new Uri($"/api/devices/{env["DEVICE_ID"]}/twin/desired", UriKind.Relative), patch))
        {
            Assert.True(patched.IsSuccessStatusCode, await patched.Content.ReadAsStringAsync());
        }

        using (var push = Json("twin-desired", await pushed))
        {
            Assert.Equal("""{"version":3,"patch":{"led":"off"}}""", push.RootElement.GetRawText());
        }

        var received = RunAsync("commands-receive");
        await server.WaitForSubscriptionAsync("sensor-1", $"enroll/v1/devices/{env["DEVICE_ID"]}/commands", TimeSpan.FromSeconds(15));
        using (var body = new StringContent("""{"name":"reboot","payload":{"delay_s":5},"ttl":"10m"}""", System.Text.Encoding.UTF8, "application/json"))
        using (var queued = await server.Http.PostAsync(new Uri($"/api/devices/{env["DEVICE_ID"]}/commands", UriKind.Relative), body))
        {
            Assert.True(queued.IsSuccessStatusCode, await queued.Content.ReadAsStringAsync());
        }

        using (var command = Json("commands-receive", await received))
        {
            env["COMMAND_ID"] = command.RootElement.GetProperty("command_id").GetString()!;
            Assert.StartsWith("cmd_", env["COMMAND_ID"], StringComparison.Ordinal);
            Assert.Equal("reboot", command.RootElement.GetProperty("name").GetString());
            Assert.Equal("""{"delay_s":5}""", command.RootElement.GetProperty("payload").GetRawText());
            Assert.True(command.RootElement.GetProperty("expires_at").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddMinutes(9));
        }

        for (var attempt = 0; attempt < 2; attempt++)
        {
            using var result = await RunJsonAsync("command-result");
            Assert.Equal(env["COMMAND_ID"], result.RootElement.GetProperty("command_id").GetString());
            Assert.Equal("succeeded", result.RootElement.GetProperty("state").GetString());
        }

        using (var pending = await RunJsonAsync("commands-pending"))
        {
            Assert.Equal(0, pending.RootElement.GetProperty("delivered").GetInt32());
        }

        using (var recorded = JsonDocument.Parse(await server.Http.GetStringAsync(new Uri($"/api/commands/{env["COMMAND_ID"]}", UriKind.Relative))))
        {
            Assert.Equal("succeeded", recorded.RootElement.GetProperty("state").GetString());
            Assert.Equal("""{"rebooting_in_s":5}""", recorded.RootElement.GetProperty("result").GetRawText());
        }

        var otherDevice = await RunAsync("twin-other-device");
        Assert.Contains("Warning: Publish 1 failed: Not authorized.", otherDevice.StandardError, StringComparison.Ordinal);
        Assert.Contains("All subscription requests were denied.", otherDevice.StandardError, StringComparison.Ordinal);
        Assert.Equal(("{}", 0L, "{}", 0L), await server.TwinInStoreAsync(env["OTHER_DEVICE_ID"]));

        using (var statusAnswer = await RunJsonAsync("device-status"))
        {
            Assert.True(statusAnswer.RootElement.GetProperty("received_at").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddMinutes(-5));
        }

        using (var status = JsonDocument.Parse(await server.Http.GetStringAsync(new Uri($"/api/devices/{env["DEVICE_ID"]}/status", UriKind.Relative))))
        {
            Assert.Equal(3, status.RootElement.GetProperty("pending").GetInt64());
            Assert.Equal(2048, status.RootElement.GetProperty("pending_bytes").GetInt64());
            Assert.Equal(95, status.RootElement.GetProperty("oldest_age_seconds").GetDouble());
        }

        // A new example on the page is a new step above, so no example goes stale unrun.
        Assert.Equal(examples.Keys.Order(StringComparer.Ordinal), ran.Order(StringComparer.Ordinal));

        async Task<ProcessResult> RunAsync(string name)
        {
            ran.Add(name);
            var script = examples[name].Replace("-p 1883", $"-p {server.MqttPort}", StringComparison.Ordinal);
            var result = await ExternalTools.RunAsync("bash", ["-c", script], TimeSpan.FromSeconds(20), environment: env);
            output.WriteLine($"--- {name}\n{result}");
            return result;
        }

        async Task<JsonDocument> RunJsonAsync(string name) => Json(name, await RunAsync(name));

        static JsonDocument Json(string name, ProcessResult result)
        {
            Assert.True(result.ExitCode == 0, $"{name} failed: {result}");
            return JsonDocument.Parse(result.StandardOutput.Trim());
        }
    }

    private static Dictionary<string, string> Examples(string markdown) =>
        ExampleBlock().Matches(markdown).ToDictionary(m => m.Groups["name"].Value, m => m.Groups["script"].Value);

    [GeneratedRegex(@"<!-- example: (?<name>[a-z0-9-]+) -->\s*```bash\n(?<script>.*?)```", RegexOptions.Singleline)]
    private static partial Regex ExampleBlock();
}
