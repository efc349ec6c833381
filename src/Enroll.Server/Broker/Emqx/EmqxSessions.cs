using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Broker.Emqx;

/// <summary>
/// Ends a revoked device's session on an EMQX 5 cluster through its REST API: <c>DELETE /api/v5/clients/{client ID}</c>
/// with an API key (HTTP Basic, <c>key:secret</c>), which EMQX answers 204 when it kicked the client and 404 when no
/// such client is connected. Any node of the cluster will do; EMQX forwards the kick to the node holding the session.
/// The device's later CONNECT, publish and subscribe checks are refused by the webhooks (<c>--broker-hooks</c>), so
/// kicking is what ends the session the device already has.
/// </summary>
internal sealed partial class EmqxSessions : IDeviceSessions, IDisposable
{
    /// <summary>How long one kick may take before the revocation answer says <c>failed</c>.</summary>
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(5);

    private readonly HttpClient _http;
    private readonly ILogger<EmqxSessions> _logger;

    public EmqxSessions(IOptions<EnrollServerOptions> options, ILogger<EmqxSessions> logger)
        : this(options.Value, new HttpClient(), logger)
    {
    }

    internal EmqxSessions(EnrollServerOptions options, HttpClient http, ILogger<EmqxSessions> logger)
    {
        var api = options.BrokerAdminUrl ?? throw new InvalidOperationException("the EMQX administrator needs BrokerAdminUrl");
        var key = options.BrokerAdminKey ?? throw new InvalidOperationException("the EMQX administrator needs BrokerAdminKey");
        _http = http;
        _http.BaseAddress = api.AbsoluteUri.EndsWith('/') ? api : new Uri(api.AbsoluteUri + "/");
        _http.Timeout = RequestTimeout;
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(key)));
        _logger = logger;
    }

    public bool CanDisconnect => true;

    public async Task<DisconnectResult> DisconnectAsync(string deviceId, string clientId, CancellationToken cancellationToken = default)
    {
        try
        {
            using var response = await _http.DeleteAsync(KickPath(clientId), cancellationToken).ConfigureAwait(false);
            switch (response.StatusCode)
            {
                case HttpStatusCode.NoContent or HttpStatusCode.OK:
                    Log.DeviceKicked(_logger, deviceId, clientId);
                    return DisconnectResult.Disconnected;
                case HttpStatusCode.NotFound:
                    return DisconnectResult.NotConnected;
                default:
                    Log.KickFailed(_logger, deviceId, clientId, $"EMQX answered {(int)response.StatusCode} {response.ReasonPhrase}");
                    return DisconnectResult.Failed;
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            Log.KickFailed(_logger, deviceId, clientId, ex.Message);
            return DisconnectResult.Failed;
        }
    }

    public void Dispose() => _http.Dispose();

    /// <summary>The API path that kicks <paramref name="clientId"/>, relative to the API's address.</summary>
    internal static string KickPath(string clientId) => "api/v5/clients/" + Uri.EscapeDataString(clientId);

    private static partial class Log
    {
        [LoggerMessage(1520, LogLevel.Information, "Ended the EMQX session of revoked device {DeviceId} (client {ClientId})")]
        public static partial void DeviceKicked(ILogger logger, string deviceId, string clientId);

        [LoggerMessage(1521, LogLevel.Warning, "Could not end the EMQX session of revoked device {DeviceId} (client {ClientId}): {Reason}; its later checks are refused, but its open session may stay")]
        public static partial void KickFailed(ILogger logger, string deviceId, string clientId, string reason);
    }
}
