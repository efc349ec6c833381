using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Enroll.Protocol.Admin;
using Enroll.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Http;

/// <summary>
/// The admin gate with operators and console sessions, against a real server: operator keys, the session cookie and its
/// flags, CSRF on state-changing cookie requests, expiry (fake clock), the sign-in rate limit, and the audit log.
/// </summary>
public sealed class OperatorGateTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDirectory _folder = new("enroll-ops");
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);
    private EnrollServerHost _host = null!;
    private HttpClient _admin = null!;
    private HttpClient _plain = null!;
    private string _adminKey = null!;

    public async Task InitializeAsync()
    {
        _host = await EnrollServerHost.StartAsync(
            new EnrollServerOptions { DataDirectory = _folder.Path, MqttPort = 0, HttpPort = 0, AdminKeyFailureLimit = 5 },
            logging => logging.AddProvider(new XunitLoggerProvider(output, "server/")).SetMinimumLevel(LogLevel.Information).AddFilter("Microsoft", LogLevel.Warning),
            _clock);
        _adminKey = (await File.ReadAllTextAsync(_host.AdminKeyPath)).Trim();
        _admin = new HttpClient { BaseAddress = _host.HttpEndpoint };
        _admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _adminKey);
        _plain = new HttpClient(new HttpClientHandler { UseCookies = false }) { BaseAddress = _host.HttpEndpoint };
    }

    public async Task DisposeAsync()
    {
        _admin.Dispose();
        _plain.Dispose();
        await _host.DisposeAsync();
        _folder.Dispose();
    }

    [Fact]
    public async Task OperatorKey_WorksLikeTheAdminKey_ButNotForOperators_AndStopsWhenRemoved()
    {
        var key = await AddOperatorAsync("alice");
        Assert.StartsWith("eop_", key, StringComparison.Ordinal);

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/api/devices", bearer: key)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/api/operators", bearer: key)).StatusCode);
        var refused = await SendAsync(HttpMethod.Post, "/api/operators", """{"name":"mallory"}""", bearer: key);
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Delete, "/api/operators/alice", bearer: key)).StatusCode);

        var session = await SignInAsync(key);
        Assert.Equal(HttpStatusCode.OK, (await _admin.DeleteAsync("/api/operators/alice")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(HttpMethod.Get, "/api/devices", bearer: key)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(HttpMethod.Get, "/api/devices", cookie: session.Cookie)).StatusCode);

        var list = await _admin.GetFromJsonAsync("/api/operators", OperatorJsonContext.Default.ItemListOperatorInfo);
        Assert.NotNull(Assert.Single(list!.Items).RemovedAt);
    }

    [Fact]
    public async Task SignIn_SetsAStrictHttpOnlyCookie_GetWithCookieWorks_StateChangesNeedTheCsrfHeader()
    {
        var session = await SignInAsync(_adminKey);
        Assert.Contains("httponly", session.SetCookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("samesite=strict", session.SetCookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("path=/", session.SetCookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("max-age=43200", session.SetCookie, StringComparison.OrdinalIgnoreCase);
        // Plain HTTP: Secure would make the browser drop the cookie; under TLS it is set (Secure = Request.IsHttps).
        Assert.DoesNotContain("secure", session.SetCookie, StringComparison.OrdinalIgnoreCase);
        Assert.True(session.Info.IsAdmin);

        var get = await SendAsync(HttpMethod.Get, "/api/session", cookie: session.Cookie);
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/api/devices", cookie: session.Cookie)).StatusCode);

        var withoutCsrf = await SendAsync(HttpMethod.Post, "/api/tokens", """{"org_id":"acme"}""", cookie: session.Cookie);
        Assert.Equal(HttpStatusCode.Forbidden, withoutCsrf.StatusCode);
        Assert.Equal("application/problem+json", withoutCsrf.Content.Headers.ContentType?.MediaType);
        Assert.Contains("csrf token missing or wrong", await withoutCsrf.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Post, "/api/tokens", """{"org_id":"acme"}""", cookie: session.Cookie, csrf: "wrong")).StatusCode);

        var withCsrf = await SendAsync(HttpMethod.Post, "/api/tokens", """{"org_id":"acme"}""", cookie: session.Cookie, csrf: session.Info.CsrfToken);
        Assert.Equal(HttpStatusCode.Created, withCsrf.StatusCode);

        // Bearer callers need no CSRF header.
        Assert.Equal(HttpStatusCode.Created, (await SendAsync(HttpMethod.Post, "/api/tokens", """{"org_id":"acme"}""", bearer: _adminKey)).StatusCode);

        var signOut = await SendAsync(HttpMethod.Delete, "/api/session", cookie: session.Cookie, csrf: session.Info.CsrfToken);
        Assert.Equal(HttpStatusCode.NoContent, signOut.StatusCode);
        Assert.Contains("max-age=0", string.Join(";", signOut.Headers.GetValues("Set-Cookie")), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(HttpMethod.Get, "/api/session", cookie: session.Cookie)).StatusCode);
    }

    [Fact]
    public async Task Sessions_ExpireAfterTheirLifetime_AndAfterAnHourIdle()
    {
        var longLived = await SignInAsync(_adminKey);
        var idle = await SignInAsync(_adminKey);
        for (var i = 0; i < 11; i++)
        {
            _clock.Advance(TimeSpan.FromMinutes(59));
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/api/session", cookie: longLived.Cookie)).StatusCode);
        }

        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(HttpMethod.Get, "/api/session", cookie: idle.Cookie)).StatusCode);
        // 11 x 59 = 649 minutes; one more request at 708, then past 720 minutes (12 h) while seen 13 minutes ago.
        _clock.Advance(TimeSpan.FromMinutes(59));
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/api/session", cookie: longLived.Cookie)).StatusCode);
        _clock.Advance(TimeSpan.FromMinutes(13));
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(HttpMethod.Get, "/api/devices", cookie: longLived.Cookie)).StatusCode);
    }

    [Fact]
    public async Task WrongKeysAtSignIn_AreRateLimited_With429AndRetryAfter()
    {
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? last = null;
        for (var i = 0; i < 8; i++)
        {
            last = await SendAsync(HttpMethod.Post, "/api/session", """{"key":"eop_wrong"}""");
            statuses.Add(last.StatusCode);
        }

        output.WriteLine(string.Join(",", statuses.Select(s => (int)s)));
        Assert.Equal(5, statuses.Count(s => s == HttpStatusCode.Unauthorized));
        Assert.Equal(HttpStatusCode.TooManyRequests, last!.StatusCode);
        Assert.NotNull(last.Headers.RetryAfter?.Delta);
        // Even the right key is refused from that address until the limit lifts.
        Assert.Equal(HttpStatusCode.TooManyRequests, (await SendAsync(HttpMethod.Post, "/api/session", JsonSerializer.Serialize(new { key = _adminKey }))).StatusCode);
    }

    [Fact]
    public async Task Audit_RecordsEveryActionKind_WithOperatorRemoteAndStatus()
    {
        var key = await AddOperatorAsync("bob");
        var token = await SendAsync(HttpMethod.Post, "/api/tokens", """{"org_id":"acme"}""", bearer: key);
        var tokenId = JsonDocument.Parse(await token.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
        await SendAsync(HttpMethod.Post, $"/api/tokens/{tokenId}/revoke", bearer: key);
        await SendAsync(HttpMethod.Post, "/api/provisioning-operations/op-x/approve", "{}", bearer: key);
        await SendAsync(HttpMethod.Post, "/api/provisioning-operations/op-y/reject", """{"reason":"unknown"}""", bearer: key);
        await SendAsync(HttpMethod.Post, "/api/devices/dev-1/revoke", bearer: key);
        await SendAsync(HttpMethod.Patch, "/api/devices/dev-1/twin/desired", """{"patch":{"a":1}}""", bearer: key);
        await SendAsync(HttpMethod.Patch, "/api/twins/desired", """{"org_id":"acme","patch":{"a":1}}""", bearer: key);
        await SendAsync(HttpMethod.Post, "/api/devices/dev-1/commands", """{"name":"reboot"}""", bearer: key);
        await SendAsync(HttpMethod.Post, "/api/commands/cmd-1/cancel", bearer: key);
        await SendAsync(HttpMethod.Post, "/api/commands/rollouts", """{"org_id":"acme","name":"reboot"}""", bearer: key);
        await SendAsync(HttpMethod.Delete, "/api/files/f-1", bearer: key);
        await SendAsync(HttpMethod.Post, "/api/keys/rotate", bearer: _adminKey);
        await SendAsync(HttpMethod.Delete, "/api/operators/bob", bearer: _adminKey);
        await SendAsync(HttpMethod.Post, "/api/session", """{"key":"eop_nope"}""");
        var session = await SignInAsync(_adminKey);
        await SendAsync(HttpMethod.Put, "/api/tokens", "{}", cookie: session.Cookie, csrf: session.Info.CsrfToken);
        await SendAsync(HttpMethod.Delete, "/api/session", cookie: session.Cookie, csrf: session.Info.CsrfToken);

        var audit = (await _admin.GetFromJsonAsync("/api/audit?limit=100", OperatorJsonContext.Default.ItemListAuditEntry))!.Items;
        foreach (var entry in audit)
        {
            output.WriteLine($"{entry.Id} {entry.Operator} {entry.Action} {entry.Target} {entry.Remote} {entry.Status} {entry.Detail}");
        }

        AuditEntry Find(string action) => Assert.Single(audit, e => e.Action == action);
        Assert.Equal("admin", Find("operator.add").Operator);
        Assert.Equal("bob", Find("operator.add").Target);
        Assert.Equal(201, Find("token.create").Status);
        Assert.Equal("bob", Find("token.create").Operator);
        Assert.Equal(tokenId, Find("token.revoke").Target);
        Assert.Equal("op-x", Find("operation.approve").Target);
        Assert.Equal("op-y", Find("operation.reject").Target);
        Assert.Equal("reason: unknown", Find("operation.reject").Detail);
        Assert.Equal("dev-1", Find("device.revoke").Target);
        Assert.Equal("dev-1", Find("twin.desired").Target);
        Find("twin.fleet_desired");
        Assert.Equal("dev-1", Find("command.send").Target);
        Assert.Equal("cmd-1", Find("command.cancel").Target);
        Find("command.rollout");
        Assert.Equal("f-1", Find("file.delete").Target);
        Assert.Equal("admin", Find("key.rotate").Operator);
        Assert.Equal("bob", Find("operator.remove").Target);
        Assert.Equal(("-", 401), (Find("session.sign_in_failed").Operator, Find("session.sign_in_failed").Status));
        Assert.Equal("admin", Find("session.sign_in").Operator);
        Assert.Equal("admin", Find("session.sign_out").Operator);
        Assert.Contains(audit, e => e.Action.StartsWith("PUT /api/tokens", StringComparison.Ordinal) || e.Action == "PUT /api/tokens");
        Assert.All(audit, e => Assert.Equal("127.0.0.1", e.Remote));
        Assert.Equal(audit.Select(e => e.Id).OrderDescending(), audit.Select(e => e.Id));

        var bobs = (await _admin.GetFromJsonAsync("/api/audit?operator=bob&action=token.create", OperatorJsonContext.Default.ItemListAuditEntry))!.Items;
        Assert.Equal("token.create", Assert.Single(bobs).Action);
        var page = await _admin.GetAsync("/api/audit?limit=2");
        Assert.Contains("before=", page.Headers.GetValues("Link").Single(), StringComparison.Ordinal);
    }

    private async Task<string> AddOperatorAsync(string name)
    {
        var response = await _admin.PostAsync("/api/operators", new StringContent($$"""{"name":"{{name}}"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var created = JsonSerializer.Deserialize(await response.Content.ReadAsStringAsync(), OperatorJsonContext.Default.CreatedOperator)!;
        Assert.Equal(name, created.Operator.Name);
        return created.Key;
    }

    private async Task<(string Cookie, string SetCookie, SessionInfo Info)> SignInAsync(string key)
    {
        var response = await SendAsync(HttpMethod.Post, "/api/session", JsonSerializer.Serialize(new { key }));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var setCookie = response.Headers.GetValues("Set-Cookie").Single();
        var cookie = setCookie.Split(';')[0];
        var info = JsonSerializer.Deserialize(await response.Content.ReadAsStringAsync(), OperatorJsonContext.Default.SessionInfo)!;
        return (cookie, setCookie, info);
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string? json = null, string? bearer = null, string? cookie = null, string? csrf = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }

        if (bearer is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }

        if (cookie is not null)
        {
            request.Headers.Add("Cookie", cookie);
        }

        if (csrf is not null)
        {
            request.Headers.Add("X-Enroll-CSRF", csrf);
        }

        var response = await _plain.SendAsync(request);
        await response.Content.LoadIntoBufferAsync();
        return response;
    }
}
