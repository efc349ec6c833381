using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Enroll.Protocol.Admin;

namespace Enroll.Cli.Tests.Commands;

/// <summary>
/// <c>enroll devices list</c> is never silently short: it follows a next page however the API announces it, and warns when
/// an API cut the list at the page size without one. The API here is a plain HTTP listener that answers pages the way
/// the paging contract says (the server's own paging is not there yet), so each way of announcing a page is covered.
/// </summary>
public sealed class ListPagingTests : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly ConcurrentQueue<string> _requests = new();
    private readonly Uri _endpoint;
    private Func<HttpListenerRequest, (IReadOnlyList<DeviceInfo> Items, string? Link, string? Cursor)> _answer = _ => ([], null, null);

    public ListPagingTests()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        _endpoint = new Uri($"http://127.0.0.1:{port}/");
        _listener.Prefixes.Add(_endpoint.ToString());
        _listener.Start();
        _ = ServeAsync();
    }

    public void Dispose() => _listener.Close();

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            _requests.Enqueue(context.Request.Url!.PathAndQuery);
            var (items, link, cursor) = _answer(context.Request);
            using var body = new MemoryStream();
            using (var writer = new Utf8JsonWriter(body))
            {
                writer.WriteStartObject();
                writer.WriteStartArray("items");
                foreach (var item in items)
                {
                    JsonSerializer.Serialize(writer, item, AdminJsonContext.Default.DeviceInfo);
                }

                writer.WriteEndArray();
                if (cursor is not null)
                {
                    writer.WriteString("next_cursor", cursor);
                }

                writer.WriteEndObject();
            }

            if (link is not null)
            {
                context.Response.Headers.Add("Link", $"<{link}>; rel=\"next\"");
            }

            context.Response.ContentType = "application/json";
            await context.Response.OutputStream.WriteAsync(body.ToArray());
            context.Response.Close();
        }
    }

    private static List<DeviceInfo> Devices(int from, int count) =>
        [.. Enumerable.Range(from, count).Select(i => new DeviceInfo { DeviceId = $"dev_{i:D5}", OrgId = "acme", ClientId = $"c{i}", Status = "active" })];

    private async Task<(int ExitCode, List<string> Ids, string Error)> ListAsync()
    {
        var result = await CliRunner.RunAsync("devices", "list", "--json", "--server", _endpoint.ToString(), "--admin-key", "k");
        Assert.True(result.ExitCode == 0, result.Error);
        using var document = JsonDocument.Parse(result.Out);
        return (result.ExitCode, [.. document.RootElement.GetProperty("items").EnumerateArray().Select(d => d.GetProperty("device_id").GetString()!)], result.Error);
    }

    [Fact]
    public async Task DevicesList_FollowsTheLinkHeader_UntilTheLastPage()
    {
        _answer = request => request.QueryString["page"] switch
        {
            null => (Devices(0, 1000), "/api/devices?limit=1000&page=2", null),
            "2" => (Devices(1000, 1000), "/api/devices?limit=1000&page=3", null),
            _ => (Devices(2000, 7), null, null),
        };

        var (_, ids, error) = await ListAsync();

        Assert.Equal(2007, ids.Count);
        Assert.Equal(2007, ids.Distinct(StringComparer.Ordinal).Count());
        Assert.Equal(3, _requests.Count);
        Assert.Contains("limit=1000", _requests.First(), StringComparison.Ordinal);
        Assert.Empty(error);
    }

    [Fact]
    public async Task DevicesList_FollowsANextCursorInTheBody()
    {
        _answer = request => request.QueryString["cursor"] switch
        {
            null => (Devices(0, 1000), null, "after-999"),
            "after-999" => (Devices(1000, 3), null, null),
            var other => throw new InvalidOperationException($"unexpected cursor {other}"),
        };

        var (_, ids, _) = await ListAsync();

        Assert.Equal(1003, ids.Count);
    }

    [Fact]
    public async Task DevicesList_CutAtThePageSizeWithoutANextPage_SaysSoOnStandardError()
    {
        _answer = _ => (Devices(0, 1000), null, null);

        var (_, ids, error) = await ListAsync();

        Assert.Equal(1000, ids.Count);
        Assert.StartsWith("enroll: warning: the server sent 1000 devices and no way to ask for more", error, StringComparison.Ordinal);
    }
}
