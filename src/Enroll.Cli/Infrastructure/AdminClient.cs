using System.CommandLine;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Enroll.Protocol.Admin;

namespace Enroll.Cli.Infrastructure;

/// <summary>An admin API call failed; <see cref="ExitCode"/> says how.</summary>
internal sealed class AdminApiException(int exitCode, string message) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>
/// Talks to a server's operator HTTP API. The admin key comes from <c>--admin-key</c>, else <c>ENROLL_ADMIN_KEY</c>, else
/// <c>{--data-dir}/admin.key</c> (default <c>./enroll-data</c>) on the server's own machine.
/// </summary>
internal sealed class AdminClient : IDisposable
{
    public const string AdminKeyVariable = "ENROLL_ADMIN_KEY";
    private readonly HttpClient _http;

    private AdminClient(Uri server, string adminKey)
    {
        _http = new HttpClient { BaseAddress = server, Timeout = TimeSpan.FromSeconds(30) };
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

    public static AdminClient Create(ParseResult parse, (Option<string> Server, Option<string?> Key, Option<string> DataDir) options) =>
        new(parse.GetUri(options.Server), ResolveKey(parse, options));

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
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            throw new AdminApiException(ExitCodes.Unreachable, $"cannot reach the server at {_http.BaseAddress}: {ex.Message}");
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new AdminApiException(ExitCodes.Unreachable, $"the server at {_http.BaseAddress} did not answer in time");
        }

        using (response)
        {
            var body = await response.Content.ReadAsByteArrayAsync(cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
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
                    HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden or HttpStatusCode.NotFound or HttpStatusCode.Conflict => ExitCodes.Refused,
                    HttpStatusCode.BadRequest => ExitCodes.Usage,
                    _ => ExitCodes.Failure,
                };
                throw new AdminApiException(code, $"{(int)response.StatusCode} {response.ReasonPhrase}: {detail ?? "no details"}");
            }

            return JsonSerializer.Deserialize(body, type) ?? throw new AdminApiException(ExitCodes.Failure, "the server sent an empty answer");
        }
    }

    public void Dispose() => _http.Dispose();
}
