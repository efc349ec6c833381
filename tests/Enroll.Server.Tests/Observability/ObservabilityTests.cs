using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Enroll.Server.Diagnostics;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Observability;

/// <summary>/metrics, /livez, /readyz, /healthz of a real server, and the docs and dashboard against the declared instruments.</summary>
public sealed class ObservabilityTests(ITestOutputHelper output)
{
    /// <summary>A declared instrument's name as the Prometheus exporter renders it (dots to underscores, unit suffix, _total for counters).</summary>
    internal static string Rendered(InstrumentDeclaration instrument)
    {
        var name = instrument.Name.Replace('.', '_');
        var unit = instrument.Unit switch
        {
            "s" => "seconds",
            "By" => "bytes",
            _ when instrument.Unit.StartsWith('{') => "",
            _ => instrument.Unit,
        };
        if (unit.Length > 0 && !name.EndsWith("_" + unit, StringComparison.Ordinal))
        {
            name += "_" + unit;
        }

        return instrument.Kind == InstrumentKind.Counter ? name + "_total" : name;
    }

    internal static string RepositoryFile(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, relative);
            if (File.Exists(candidate) && File.Exists(Path.Combine(dir.FullName, "Enroll.slnx")))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException($"{relative} not found above {AppContext.BaseDirectory}");
    }

    [Fact]
    public async Task Metrics_AfterARegistration_HoldTheDeclaredServerInstrumentsWithValues()
    {
        await using var server = await TestServer.StartAsync(output);
        using var states = new TempDirectory();
        var token = await server.CreateTokenAsync();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "metrics-1", states.Combine("metrics-1"), token.Token, output);
        await device.Registration.StartAsync();

        using var anonymous = new HttpClient { BaseAddress = server.HttpEndpoint };
        var text = await Eventually.ReturnsAsync(
            () => anonymous.GetStringAsync(new Uri("/metrics", UriKind.Relative)),
            body => body.Contains("enroll_server_registrations_total{", StringComparison.Ordinal),
            TimeSpan.FromSeconds(20),
            "the scrape shows the registration");
        output.WriteLine(text);

        Assert.Matches(new Regex(@"^enroll_server_registrations_total\{[^}]*result=""ok""[^}]*\} [1-9]", RegexOptions.Multiline), text);
        Assert.Matches(new Regex(@"^enroll_server_requests_total\{[^}]*\} [1-9]", RegexOptions.Multiline), text);
        Assert.Matches(new Regex(@"^messaging_process_duration_seconds_count\{[^}]*messaging_destination_template=""enroll/v1/register""[^}]*\} [1-9]", RegexOptions.Multiline), text);
        Assert.Matches(new Regex(@"^messaging_client_consumed_messages_total\{[^}]*\} [1-9]", RegexOptions.Multiline), text);
        Assert.Matches(new Regex(@"^enroll_server_broker_connections_total\{[^}]*\} [1-9]", RegexOptions.Multiline), text);
        Assert.Matches(new Regex(@"^enroll_server_broker_connections_open\{[^}]*\} [0-9]", RegexOptions.Multiline), text);
    }

    [Fact]
    public async Task Livez_Healthz_AndReadyz_AnswerOk_OnAServerThatServes()
    {
        await using var server = await TestServer.StartAsync(output);
        using var anonymous = new HttpClient { BaseAddress = server.HttpEndpoint };
        Assert.Equal("ok\n", await anonymous.GetStringAsync(new Uri("/livez", UriKind.Relative)));
        Assert.Equal("ok\n", await anonymous.GetStringAsync(new Uri("/healthz", UriKind.Relative)));
        using var ready = await anonymous.GetAsync(new Uri("/readyz", UriKind.Relative));
        var body = await ready.Content.ReadAsStringAsync();
        Assert.True(ready.StatusCode == HttpStatusCode.OK, body);
        using var json = JsonDocument.Parse(body);
        Assert.Equal("ready", json.RootElement.GetProperty("status").GetString());
        Assert.Equal(0, json.RootElement.GetProperty("not_ready").GetArrayLength());
    }

    [Fact]
    public async Task Metrics_WithAKey_AnswerOnlyTheBearerOfIt()
    {
        await using var server = await TestServer.StartAsync(output, o => o.MetricsKey = "scrape-secret");
        using var anonymous = new HttpClient { BaseAddress = server.HttpEndpoint };
        using var refused = await anonymous.GetAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("/metrics", UriKind.Relative));
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "scrape-secret");
        using var allowed = await anonymous.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
    }

    [Fact]
    public void Docs_ListEveryDeclaredServerInstrument()
    {
        var doc = File.ReadAllText(RepositoryFile("docs/observability.md"));
        var missing = ServerInstruments.All.Where(i => !doc.Contains($"| `{i.Name}` |", StringComparison.Ordinal)).Select(i => i.Name).ToList();
        Assert.True(missing.Count == 0, "docs/observability.md lacks: " + string.Join(", ", missing));
    }

    [Fact]
    public void Dashboard_UsesOnlyDeclaredInstruments_AsPrometheusRendersThem()
    {
        var dashboard = File.ReadAllText(RepositoryFile("deploy/grafana/enroll-dashboard.json"));
        using var json = JsonDocument.Parse(dashboard);
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var instrument in ServerInstruments.All.Select(i => (i.Name, i.Kind, i.Unit)).Concat(DeviceInstrumentNames))
        {
            var rendered = Rendered(new InstrumentDeclaration(instrument.Name, instrument.Kind, instrument.Unit, "", ""));
            known.Add(rendered);
            if (instrument.Kind == InstrumentKind.Histogram)
            {
                known.UnionWith([rendered + "_bucket", rendered + "_sum", rendered + "_count"]);
            }
        }

        var expressions = Regex.Matches(dashboard, "\"expr\":\\s*\"((?:[^\"\\\\]|\\\\.)*)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.True(expressions.Count >= 9, $"found {expressions.Count} expressions");
        var used = expressions.SelectMany(e => Regex.Matches(Regex.Replace(e, @"\b(?:by|without)\s*\([^)]*\)", ""), @"\b(?:enroll|messaging)_[a-z0-9_]+").Select(m => m.Value)).ToHashSet(StringComparer.Ordinal);
        var unknown = used.Where(u => !known.Contains(u)).ToList();
        Assert.True(unknown.Count == 0, "the dashboard uses undeclared metrics: " + string.Join(", ", unknown));
    }

    /// <summary>The device library's instruments the dashboard may show (the device side's own test holds these to <c>DeviceInstruments</c>).</summary>
    private static readonly (string Name, InstrumentKind Kind, string Unit)[] DeviceInstrumentNames =
    [
        ("enroll.device.outbox.depth", InstrumentKind.Gauge, "{message}"),
        ("enroll.device.outbox.bytes", InstrumentKind.Gauge, "By"),
        ("enroll.device.outbox.oldest_age", InstrumentKind.Gauge, "s"),
        ("messaging.client.sent.messages", InstrumentKind.Counter, "{message}"),
    ];
}
