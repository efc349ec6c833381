using System.CommandLine;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Enroll.Protocol.Admin;

namespace Enroll.Cli.Infrastructure;

/// <summary>
/// Talks to a server's operator HTTP API. The admin key comes from <c>--admin-key</c>, else <c>ENROLL_ADMIN_KEY</c>, else
/// <c>{--data-dir}/admin.key</c> (default <c>./enroll-data</c>) on the server's own machine.
/// </summary>
internal sealed class AdminClient : IDisposable
{
    public const string AdminKeyVariable = "ENROLL_ADMIN_KEY";
    private readonly HttpClient _http;

    private AdminClient(Uri server, string adminKey, TimeSpan? timeout = null)
    {
        _http = new HttpClient { BaseAddress = server, Timeout = timeout ?? TimeSpan.FromSeconds(30) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
    }

    public static Option<string> ServerOption() =>
        CliOptions.Uri("--server", "The Enroll server's HTTP API (or set ENROLL_SERVER)", Environment.GetEnvironmentVariable("ENROLL_SERVER") ?? "http://127.0.0.1:8080");

    public static Option<string?> AdminKeyOption() => new("--admin-key") { Description = $"The admin API key (default: ${AdminKeyVariable}, else the key file in --data-dir)" };

    public static Option<string> DataDirOption() => new("--data-dir")
    {
        Description = "The server's data folder, to read admin.key from when no key is given (default ./enroll-data)",
        DefaultValueFactory = _ => "enroll-data",
    };

    /// <summary>Adds the connection options to <paramref name="command"/>.</summary>
    public static (Option<string> Server, Option<string?> Key, Option<string> DataDir) AddOptions(Command command)
    {
        var server = ServerOption();
        var key = AdminKeyOption();
        var dataDir = DataDirOption();
        command.Options.Add(server);
        command.Options.Add(key);
        command.Options.Add(dataDir);
        return (server, key, dataDir);
    }

    /// <summary>A client for the server the options name; <paramref name="timeout"/> (30 s when absent) bounds each call.</summary>
    public static AdminClient Create(ParseResult parse, (Option<string> Server, Option<string?> Key, Option<string> DataDir) options, TimeSpan? timeout = null) =>
        new(parse.GetUri(options.Server), ResolveKey(parse, options), timeout);

    /// <summary>The admin key from <c>--admin-key</c>, else <c>ENROLL_ADMIN_KEY</c>, else <c>{--data-dir}/admin.key</c>.</summary>
    public static string ResolveKey(ParseResult parse, (Option<string> Server, Option<string?> Key, Option<string> DataDir) options)
    {
        var key = parse.GetValue(options.Key) ?? Environment.GetEnvironmentVariable(AdminKeyVariable);
        if (!string.IsNullOrWhiteSpace(key))
        {
            return key;
        }

        var file = Path.Combine(parse.GetValue(options.DataDir)!, "admin.key");
        if (!File.Exists(file))
        {
            throw new AdminApiException(ExitCodes.Usage,
                $"no admin key: pass --admin-key, set {AdminKeyVariable}, or run where the server's data folder is (looked for {Path.GetFullPath(file)})");
        }

        return File.ReadAllText(file).Trim();
    }

    public Task<T> GetAsync<T>(string path, JsonTypeInfo<T> type, CancellationToken cancellationToken) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Get, path), type, cancellationToken);

    /// <summary>A <c>PATCH</c> with a JSON merge patch (RFC 7396) as the body, and <c>If-Match</c> when <paramref name="ifMatch"/> is given.</summary>
    public Task<T> PatchAsync<T>(string path, string mergePatch, string? ifMatch, JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        var request = new HttpRequestMessage(HttpMethod.Patch, path)
        {
            Content = new StringContent(mergePatch, System.Text.Encoding.UTF8, "application/merge-patch+json"),
        };
        if (ifMatch is not null)
        {
            request.Headers.TryAddWithoutValidation("If-Match", ifMatch);
        }

        return SendAsync(request, type, cancellationToken);
    }

    /// <summary>How many items <see cref="GetAllAsync"/> asks for per request (the server's maximum for messages).</summary>
    public const int PageSize = 1000;

    /// <summary>
    /// Every item of a list endpoint: asks for <see cref="PageSize"/> items at a time and follows the server's next page
    /// (a <c>Link: &lt;...&gt;; rel="next"</c> header, or a <c>next_cursor</c> / <c>next</c> field in the body) until there
    /// is none. A server that cut the list at <see cref="PageSize"/> without saying how to go on gets a warning on
    /// <paramref name="warnings"/>, so a list is never silently short.
    /// </summary>
    public async Task<List<T>> GetAllAsync<T>(string path, JsonTypeInfo<T> itemType, TextWriter warnings, string what, CancellationToken cancellationToken)
    {
        var first = path + (path.Contains('?', StringComparison.Ordinal) ? "&" : "?") + $"limit={PageSize}";
        var url = first;
        var items = new List<T>();
        var seen = new HashSet<string>(StringComparer.Ordinal) { url };
        while (true)
        {
            var (page, next) = await SendPageAsync(url, itemType, cancellationToken);
            items.AddRange(page);
            if (next is not null && page.Count > 0)
            {
                url = next.StartsWith('/') || next.StartsWith("http", StringComparison.OrdinalIgnoreCase) ? next : WithCursor(first, next);
                if (seen.Add(url))
                {
                    continue;
                }
            }

            if (next is null && page.Count >= PageSize)
            {
                warnings.WriteLine($"enroll: warning: the server sent {items.Count} {what} and no way to ask for more; the list may be cut (narrow it, for example with --org)");
            }

            return items;
        }
    }

    private static string WithCursor(string first, string cursor) => $"{first}&cursor={Uri.EscapeDataString(cursor)}";

    private async Task<(List<T> Items, string? Next)> SendPageAsync<T>(string url, JsonTypeInfo<T> itemType, CancellationToken cancellationToken)
    {
        var (body, headers) = await SendRawAsync(new HttpRequestMessage(HttpMethod.Get, url), cancellationToken);
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            var items = new List<T>();
            if (root.TryGetProperty("items", out var array) && array.ValueKind == JsonValueKind.Array)
            {
                foreach (var element in array.EnumerateArray())
                {
                    items.Add(element.Deserialize(itemType)!);
                }
            }

            var next = NextLink(headers)
                ?? (root.TryGetProperty("next_cursor", out var cursor) && cursor.ValueKind == JsonValueKind.String ? cursor.GetString() : null)
                ?? (root.TryGetProperty("next", out var link) && link.ValueKind == JsonValueKind.String ? link.GetString() : null);
            return (items, string.IsNullOrEmpty(next) ? null : next);
        }
        catch (JsonException ex)
        {
            throw new AdminApiException(ExitCodes.Failure, $"the server's answer is not the list expected: {ex.Message}");
        }
    }

    private static string? NextLink(HttpResponseHeaders headers)
    {
        if (!headers.TryGetValues("Link", out var values))
        {
            return null;
        }

        foreach (var part in values.SelectMany(v => v.Split(',')))
        {
            var pieces = part.Split(';', StringSplitOptions.TrimEntries);
            if (pieces.Length > 1 && pieces[0].StartsWith('<') && pieces[0].EndsWith('>')
                && pieces.Skip(1).Any(p => p.Replace(" ", string.Empty, StringComparison.Ordinal).Equals("rel=\"next\"", StringComparison.OrdinalIgnoreCase) || p.Equals("rel=next", StringComparison.OrdinalIgnoreCase)))
            {
                return pieces[0][1..^1];
            }
        }

        return null;
    }

    public Task<T> PostAsync<TBody, T>(string path, TBody body, JsonTypeInfo<TBody> bodyType, JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path)
        {
            Content = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(body, bodyType)) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } },
        };
        return SendAsync(request, type, cancellationToken);
    }

    public Task<T> PostAsync<T>(string path, JsonTypeInfo<T> type, CancellationToken cancellationToken) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json") }, type, cancellationToken);

    private async Task<T> SendAsync<T>(HttpRequestMessage request, JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        var (body, _) = await SendRawAsync(request, cancellationToken);
        try
        {
            return JsonSerializer.Deserialize(body, type) ?? throw new AdminApiException(ExitCodes.Failure, "the server sent an empty answer");
        }
        catch (JsonException ex)
        {
            throw new AdminApiException(ExitCodes.Failure, $"the server's answer cannot be read: {ex.Message}");
        }
    }

    /// <summary>A <c>DELETE</c>; the answer's body read as <paramref name="type"/>.</summary>
    public Task<T> DeleteAsync<T>(string path, JsonTypeInfo<T> type, CancellationToken cancellationToken) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Delete, path), type, cancellationToken);

    /// <summary>
    /// A <c>GET</c> whose body the caller streams (the response as soon as its headers are in; the caller disposes it).
    /// The per-call timeout bounds the wait for the headers, not the body. A failure throws as the other calls do.
    /// </summary>
    public Task<HttpResponseMessage> GetStreamAsync(string path, CancellationToken cancellationToken) =>
        SendCheckedAsync(new HttpRequestMessage(HttpMethod.Get, path), HttpCompletionOption.ResponseHeadersRead, cancellationToken);

    private async Task<(byte[] Body, HttpResponseHeaders Headers)> SendRawAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        using var response = await SendCheckedAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
        return (await response.Content.ReadAsByteArrayAsync(cancellationToken), response.Headers);
    }

    /// <summary>Sends <paramref name="request"/>; a successful response, or an <see cref="AdminApiException"/> with the exit code the failure means.</summary>
    private async Task<HttpResponseMessage> SendCheckedAsync(HttpRequestMessage request, HttpCompletionOption completion, CancellationToken cancellationToken)
    {
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, completion, cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            throw new AdminApiException(ExitCodes.Unreachable, $"cannot reach the server at {_http.BaseAddress}: {ex.Message}");
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new AdminApiException(ExitCodes.Unreachable, $"the server at {_http.BaseAddress} did not answer in time");
        }

        if (response.IsSuccessStatusCode)
        {
            return response;
        }

        using (response)
        {
            var body = await response.Content.ReadAsByteArrayAsync(cancellationToken);
            string? detail = null;
            try
            {
                detail = JsonSerializer.Deserialize(body, AdminJsonContext.Default.ApiProblem)?.Detail;
            }
            catch (JsonException)
            {
            }

            var code = response.StatusCode switch
            {
                HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden or HttpStatusCode.NotFound or HttpStatusCode.Conflict or HttpStatusCode.PreconditionFailed => ExitCodes.Refused,
                HttpStatusCode.BadRequest => ExitCodes.Usage,
                HttpStatusCode.TooManyRequests or HttpStatusCode.ServiceUnavailable or HttpStatusCode.BadGateway or HttpStatusCode.GatewayTimeout
                    or HttpStatusCode.InsufficientStorage => ExitCodes.Unreachable,
                _ => ExitCodes.Failure,
            };
            var retry = response.Headers.RetryAfter?.Delta is { } delta ? $" (retry in {Durations.Format(delta)})" : string.Empty;
            throw new AdminApiException(code, $"{(int)response.StatusCode} {response.ReasonPhrase}: {detail ?? "no details"}{retry}");
        }
    }

    public void Dispose() => _http.Dispose();
}
